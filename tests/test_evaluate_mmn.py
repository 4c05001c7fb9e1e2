"""The ``mmn`` protocol in MMN's float32 arithmetic: IoUs that are exactly a threshold in float64 and
not in float32 (both ways, for the hit test and the NMS test), and agreement with a float32 torch
transcription of MMN's rules on rankings full of such ties."""
import numpy as np
import pytest
import torch

from fian_fast.evaluate import QueryRanking, iou_mmn, iou_seconds, nms_mmn, score_queries


def q(segments, gt, scores=None):
    segs = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    scores = np.linspace(0.9, 0.1, len(segs)) if scores is None else np.asarray(scores, dtype=np.float64)
    return QueryRanking(segs, scores, np.arange(len(segs)), 20, 20.0, tuple(gt))


def test_iou_is_float32():
    iou = iou_mmn([[1.7, 4.7]], (1.0, 11.0))
    assert iou.dtype == np.float32
    # 3 / 10 in float32 from float32 ends: one float32 step below float32(0.3); float64 gives 0.3 exactly
    assert iou_seconds([[1.7, 4.7]], (1.0, 11.0))[0] == 0.3 and iou[0] < np.float32(0.3)


def test_a_float64_hit_that_mmn_misses():
    # IoU([1.7, 4.7], [1, 11]) is exactly 0.3 in float64, a hit under ">= 0.3" (moment_detr's float64 test);
    # in MMN's float32 it is 0.29999998 < float32(0.3): a miss
    one = [q([[1.7, 4.7]], (1.0, 11.0))]
    assert score_queries(one, "mmn", thresholds=(0.3,)).hits == {(1, 0.3): 0, (5, 0.3): 0}
    assert score_queries(one, "moment_detr", thresholds=(0.3,)).hits == {(1, 0.3): 1}


def test_a_float64_miss_that_mmn_hits():
    # IoU([13.6, 19.0], [16.0, 19.6]) = 3 / 6: float64 gives 0.49999999999999983 (a miss under >= 0.5),
    # float32 gives 0.5 exactly: MMN hits
    assert iou_seconds([[13.6, 19.0]], (16.0, 19.6))[0] < 0.5 and iou_mmn([[13.6, 19.0]], (16.0, 19.6))[0] == 0.5
    one = [q([[13.6, 19.0]], (16.0, 19.6))]
    assert score_queries(one, "mmn", thresholds=(0.5,)).hits == {(1, 0.5): 1, (5, 0.5): 1}
    assert score_queries(one, "moment_detr", thresholds=(0.5,)).hits == {(1, 0.5): 0}


def test_nms_suppresses_an_overlap_exactly_at_the_threshold_in_float64():
    # IoU([10.8, 16.8], [12.2, 15.2]) = 3 / 6 is exactly 0.5 in float64 (kept: only > suppresses) but
    # 0.50000006 > float32(0.5) in float32: MMN suppresses the second window, the only one hitting 0.7
    segs = [[10.8, 16.8], [12.2, 15.2]]
    assert iou_seconds([segs[1]], segs[0])[0] == 0.5
    assert nms_mmn(np.array(segs), np.array([0.9, 0.8]), 0.5) == [0]
    res = score_queries([q(segs, (12.2, 15.2))], "mmn", thresholds=(0.7,), nms_threshold=0.5)
    assert res.hits == {(1, 0.7): 0, (5, 0.7): 0}


def test_nms_keeps_an_overlap_above_the_threshold_in_float64():
    # IoU([5.5, 17.4], [0.8, 13.8]) is 0.5000000000000001 in float64 (> 0.5: suppressed there) but exactly 0.5 in
    # float32: MMN keeps the second window, which is the hit at 0.7
    segs = [[5.5, 17.4], [0.8, 13.8]]
    assert iou_seconds([segs[1]], segs[0])[0] > 0.5 and iou_mmn([segs[1]], segs[0])[0] == np.float32(0.5)
    assert nms_mmn(np.array(segs), np.array([0.9, 0.8]), 0.5) == [0, 1]
    res = score_queries([q(segs, (0.8, 13.8))], "mmn", thresholds=(0.7,), nms_threshold=0.5)
    assert res.hits == {(1, 0.7): 0, (5, 0.7): 1}


def test_scores_compare_in_float32():
    # two scores equal in float32 but not in float64 are a tie: the given order decides
    scores = [0.1 + 1e-12, 0.1 + 2e-12]
    assert nms_mmn(np.array([[0.0, 1.0], [5.0, 6.0]]), np.array(scores), 0.5) == [0, 1]


# ------------------------------------------------------- a float32 torch transcription of the rules
def _mmn_in_torch(segments, scores, gt, nms_threshold, thresholds, recalls=(1, 5), dtype=torch.float32):
    """MMN's rules written with float32 torch tensors, as its evaluator holds them: moments and
    ground truth as float32 tensors, IoU tensor arithmetic, the NMS test against a Python float
    and the hit test against a float32 tensor of thresholds (``dtype``: the same in another
    precision)."""
    moments = torch.tensor(np.asarray(segments), dtype=dtype).reshape(-1, 2)
    sc = torch.tensor(np.asarray(scores), dtype=torch.float32)
    moments, sc = moments[sc != 0], sc[sc != 0]
    moments = moments[torch.sort(sc, descending=True, stable=True).indices]

    def iou(c, g):
        inter = torch.minimum(c[:, 1], g[1]) - torch.maximum(c[:, 0], g[0])
        return inter.clamp(min=0) / (torch.maximum(c[:, 1], g[1]) - torch.minimum(c[:, 0], g[0]))

    gone = torch.zeros(len(moments), dtype=torch.bool)
    for i in range(len(moments) - 1):
        if not gone[i]:
            gone[i + 1:] |= iou(moments[i + 1:], moments[i]) > nms_threshold
    kept = moments[~gone]
    target = torch.tensor(gt, dtype=dtype)
    ms = torch.tensor(thresholds, dtype=dtype)
    return {(r, m): bool((iou(kept[:r], target)[:, None] >= ms).any(0)[j]) if len(kept) else False
            for r in recalls for j, m in enumerate(thresholds)}


@pytest.mark.parametrize("nms", [0.4, 0.5])
def test_matches_a_float32_torch_transcription_on_tied_rankings(nms):
    # segments on a grid of 0.1 s and ground truths on a grid of frames: many IoUs land on 0.1, 0.3, 0.5, 0.7
    rng = np.random.default_rng(11)
    thresholds = (0.1, 0.3, 0.5, 0.7)
    queries, want, in_float64 = [], {(r, m): 0 for m in thresholds for r in (1, 5)}, 0
    for _ in range(400):
        k = int(rng.integers(0, 12))
        segs = np.sort(rng.integers(0, 200, (k, 2)), axis=1) / 10.0
        scores = rng.choice(np.float32([0.0, 0.25, 0.5, 0.75, 0.9]), k)
        gt = tuple(float(v) for v in np.sort(rng.integers(0, 200, 2)) / 10.0)
        queries.append(QueryRanking(segs, scores, np.arange(k), 20, 20.0, gt))
        hits = _mmn_in_torch(segs, scores, gt, nms, thresholds)
        for key, hit in hits.items():
            want[key] += hit
        in_float64 += hits != _mmn_in_torch(segs, scores, gt, nms, thresholds, dtype=torch.float64)
    got = score_queries(queries, "mmn", thresholds=thresholds, nms_threshold=nms)
    assert got.hits == want
    assert in_float64 > 0        # the same rules in float64 grade some of these queries otherwise
