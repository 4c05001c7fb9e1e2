"""Evaluation protocols pinned on hand-made cases (hit counts exact), and the model's ranking."""
import numpy as np
import pytest
import torch

from fian_fast.evaluate import (QueryRanking, THRESHOLDS, iou_frames_csmgan, iou_seconds, nms_2dtan, nms_csmgan,
                                ranked_segments, score_queries)


def q(segments, gt, length=20, duration=20.0, scores=None):
    segs = np.asarray(segments, dtype=np.float64)
    scores = np.linspace(0.9, 0.1, len(segs)) if scores is None else np.asarray(scores, dtype=np.float64)
    return QueryRanking(segs, scores, np.arange(len(segs)), length, duration, tuple(gt))


def test_iou_definitions():
    assert iou_seconds([[2, 4]], (2, 6))[0] == pytest.approx(0.5)
    assert iou_seconds([[0, 1]], (2, 6))[0] == 0.0
    # inclusive frame indices: [2, 3] vs [2, 5]: (1 + 1) / (3 + 1)
    assert iou_frames_csmgan([[2, 3]], (2, 5))[0] == pytest.approx(0.5)
    assert iou_frames_csmgan([[0, 1]], (5, 9))[0] == 0.0


def test_2dtan_hit_is_strict():
    res = score_queries([q([[2, 4]], (2, 6))], "2dtan", thresholds=(0.5,))
    assert res.hits[(1, 0.5)] == 0  # IoU exactly 0.5 is not > 0.5
    assert res.metrics["mIoU"] == 50.0


def test_csmgan_hit_is_inclusive_on_frames():
    # (2, 4) s of a 20 s / 20-frame video -> frames [2, 3]; gt (2, 6) s -> frames [2, 5]: IoU 0.5
    res = score_queries([q([[2, 4]], (2, 6))], "csmgan", thresholds=(0.5,))
    assert res.hits[(1, 0.5)] == 1
    assert res.metrics["mIoU"] == 50.0


def test_2dtan_nms_at_half_and_ranked_hits():
    # B (5/9) and D (6.5/7) overlap A by more than 0.5: suppressed; C does not overlap: kept.
    segs = [[0, 7], [2, 9], [10, 12], [0.5, 7]]
    assert nms_2dtan(np.array(segs, float), 0.5, 5) == [0, 2]
    res = score_queries([q(segs, (3, 10))], "2dtan", thresholds=(0.3, 0.5, 0.7))
    assert res.hits == {(1, 0.3): 1, (5, 0.3): 1, (1, 0.5): 0, (5, 0.5): 0, (1, 0.7): 0, (5, 0.7): 0}
    assert res.metrics["mIoU"] == 40.0


def test_2dtan_nms_keeps_overlap_equal_to_threshold():
    # IoU([0, 4], [2, 6]) = 2 / 6 ... use [0, 3] vs [1, 4]: 2 / 4 = 0.5 -> kept (<= 0.5)
    assert nms_2dtan(np.array([[0, 3], [1, 4]], float), 0.5, 5) == [0, 1]


def test_2dtan_stops_after_five_kept():
    segs = [[i, i + 0.5] for i in range(7)]
    assert nms_2dtan(np.array(segs, float), 0.5, 5) == [0, 1, 2, 3, 4]
    miss = score_queries([q(segs, (5, 5.5))], "2dtan", thresholds=(0.5,))
    hit = score_queries([q(segs, (4, 4.5))], "2dtan", thresholds=(0.5,))
    assert miss.hits[(5, 0.5)] == 0 and hit.hits[(5, 0.5)] == 1 and hit.hits[(1, 0.5)] == 0


def test_csmgan_separate_nms_per_threshold():
    # frames: A = [0, 6], B = [2, 8] (plain overlap 0.5), gt = [3, 9]; IoU(A) = 0.4, IoU(B) = 0.75.
    # m = 0.3 (NMS 0.25) and 0.5 (0.45) suppress B, m = 0.7 (0.65) keeps it: R5@0.5 misses, R5@0.7 hits.
    res = score_queries([q([[0, 7], [2, 9]], (3, 10))], "csmgan", thresholds=(0.3, 0.5, 0.7))
    assert res.hits == {(1, 0.3): 1, (5, 0.3): 1, (1, 0.5): 0, (5, 0.5): 0, (1, 0.7): 0, (5, 0.7): 1}
    assert res.metrics["mIoU"] == 40.0
    # the same predictions under 2dtan: one NMS at 0.5 suppresses B for every threshold
    res2 = score_queries([q([[0, 7], [2, 9]], (3, 10))], "2dtan", thresholds=(0.7,))
    assert res2.hits[(5, 0.7)] == 0


def test_csmgan_ties_take_higher_index():
    segs = np.array([[0, 4], [0, 4], [10, 12]], float)
    assert nms_csmgan(segs, np.array([0.5, 0.5, 0.1]), np.array([3, 7, 1]), 0.45) == [1, 2]


def test_counts_and_percentages_over_queries():
    queries = [q([[0, 10]], (0, 10)), q([[0, 10]], (10, 20)), q([[5, 15]], (0, 10)), q([], (0, 1))]
    res = score_queries(queries, "2dtan", thresholds=(0.3,), recalls=(1,))
    assert res.num_queries == 4 and res.hits[(1, 0.3)] == 2
    assert res.metrics == {"R1@0.3": 50.0, "mIoU": pytest.approx(100 * (1 + 0 + 1 / 3) / 4, abs=0.01)}
    assert res.to_json()["protocol"] == "2dtan" and "[2dtan] 4 queries" in res.summary()
    with pytest.raises(ValueError, match="protocol should be one of"):
        score_queries(queries, "mmn")


def test_dataset_thresholds():
    assert THRESHOLDS["charades"] == (0.5, 0.7) and THRESHOLDS["activitynet"] == (0.3, 0.5, 0.7)
    assert THRESHOLDS["tacos"] == (0.1, 0.3, 0.5, 0.7) and THRESHOLDS["synthetic"] == (0.3, 0.5, 0.7)


def test_ranked_segments_from_the_model():
    from fian_fast import FIAN, FIANConfig

    cfg = FIANConfig.preset("synthetic")
    model = FIAN(cfg).eval()
    B = 3
    lengths = torch.tensor([32, 17, 5])
    out = model(torch.randn(B, 32, cfg.video_dim), lengths, torch.randn(B, 4, cfg.word_dim), torch.tensor([4, 2, 1]))
    durations = torch.tensor([16.0, 8.5, 2.5])
    gt = torch.tensor([[0.1, 0.5], [0.0, 1.0], [0.2, 0.4]])
    ranks = ranked_segments(model, out, durations, gt)
    for b, r in enumerate(ranks):
        assert len(r.segments) == int(out.valid[b].sum())
        assert (np.diff(r.scores) <= 0).all()
        assert r.segments.min() >= 0 and r.segments.max() <= durations[b].item() + 1e-4
        assert r.gt == pytest.approx((gt[b, 0].item() * durations[b].item(), gt[b, 1].item() * durations[b].item()))
    full = model.decode(out, durations, top_n=out.logits.shape[1], nms_threshold=1.0)
    for b, r in enumerate(ranks):
        k = len(r.segments)
        assert (full.indices[b, k:] == -1).all()
        np.testing.assert_array_equal(r.indices, full.indices[b, :k].numpy())
        np.testing.assert_allclose(r.segments, full.segments[b, :k].numpy(), atol=1e-5)
        np.testing.assert_allclose(r.scores, full.scores[b, :k].numpy(), atol=1e-6)
