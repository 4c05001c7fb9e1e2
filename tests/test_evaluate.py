"""Evaluation protocols pinned on hand-made cases (hit counts exact), and the model's ranking."""
import numpy as np
import pytest
import torch

from fian_fast.evaluate import (MOMENT_DETR_AP_THRESHOLDS, PROTOCOLS, SUPPRESSING, QueryRanking, THRESHOLDS,
                                average_precision_moment_detr, default_nms_threshold, iou_frames_csmgan, iou_seconds,
                                nms_2dtan, nms_csmgan, nms_mmn, ranked_segments, score_queries)


def q(segments, gt, length=20, duration=20.0, scores=None, gt_windows=None):
    segs = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    scores = np.linspace(0.9, 0.1, len(segs)) if scores is None else np.asarray(scores, dtype=np.float64)
    windows = None if gt_windows is None else np.asarray(gt_windows, dtype=np.float64)
    return QueryRanking(segs, scores, np.arange(len(segs)), length, duration, tuple(gt), windows)


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
    with pytest.raises(ValueError, match="score_queries: protocol should be one of"):
        score_queries(queries, "vslnet")


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
    ranks = ranked_segments(out, durations, gt)
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


# ------------------------------------------------------------------------ NMS thresholds
def test_nms_threshold_defaults_and_checks():
    assert PROTOCOLS == ("2dtan", "csmgan", "mmn", "moment_detr") and SUPPRESSING == ("2dtan", "mmn")
    assert default_nms_threshold("2dtan") == 0.5 and default_nms_threshold("2dtan", "tacos") == 0.5
    assert default_nms_threshold("mmn") == 0.5 and default_nms_threshold("mmn", "tacos") == 0.4
    assert default_nms_threshold("csmgan") is None and default_nms_threshold("moment_detr") is None
    with pytest.raises(ValueError, match="default_nms_threshold: protocol should be one of"):
        default_nms_threshold("tall")
    with pytest.raises(ValueError, match="score_queries: nms_threshold applies to the protocols"):
        score_queries([], "csmgan", nms_threshold=0.4)
    with pytest.raises(ValueError, match=r"score_queries: nms_threshold should be in \[0, 1\], got 1.5"):
        score_queries([], "2dtan", nms_threshold=1.5)


@pytest.mark.parametrize("protocol", SUPPRESSING)
def test_nms_threshold_moves_the_suppression(protocol):
    # IoU([0, 10], [4, 14]) = 6 / 14 = 0.43: kept at 0.5 (2D-TAN's conv configs), dropped at 0.4 (its TACoS-pool
    # config, MMN's TACoS config); the second is the only window with IoU >= 0.7 against (4, 14)
    queries = [q([[0, 10], [4, 14]], (4, 14))]
    at_half = score_queries(queries, protocol, thresholds=(0.7,), nms_threshold=0.5)
    at_04 = score_queries(queries, protocol, thresholds=(0.7,), nms_threshold=0.4)
    assert at_half.hits[(5, 0.7)] == 1 and at_04.hits[(5, 0.7)] == 0
    assert at_04.to_json()["nms_threshold"] == 0.4 and "(NMS 0.4)" in at_04.summary()
    assert score_queries(queries, protocol, thresholds=(0.7,)).nms_threshold == 0.5


def test_2dtan_nan_overlap_is_dropped():
    # two zero-length windows at one point: overlap 0/0 = NaN fails "<= threshold" in 2D-TAN's NMS
    assert nms_2dtan(np.array([[2, 2], [2, 2], [0, 10]], float), 0.5, 5) == [0, 2]


# ----------------------------------------------------------------------------------- csmgan
def test_csmgan_raises_an_end_below_its_start():
    # (2.2, 2.8) s of a 20 s / 20-frame video -> frames [2.2, 1.8]: the end is raised to 2.2; gt (2, 3) s -> [2, 2].
    # Raised: (min(2.2, 2) - 2.2 + 1) / (2.2 - 2 + 1) = 0.667, a hit at 0.65; left crossed it would be 0.6, a miss.
    res = score_queries([q([[2.2, 2.8]], (2, 3))], "csmgan", thresholds=(0.65,))
    assert res.hits[(1, 0.65)] == 1 and res.metrics["mIoU"] == pytest.approx(66.67, abs=0.01)


def test_csmgan_no_candidate_and_nan_iou():
    res = score_queries([q([], (2, 6)), q([[np.nan, np.nan]], (2, 6))], "csmgan", thresholds=(0.1,))
    assert res.num_queries == 2 and res.hits == {(1, 0.1): 0, (5, 0.1): 0}
    assert res.metrics["mIoU"] == 0.0                       # a NaN top-1 IoU counts 0, it does not turn the mean NaN


# -------------------------------------------------------------------------------------- mmn
def test_mmn_hit_is_inclusive():
    # IoU exactly 0.5: a hit under MMN (>=), a miss under 2D-TAN (>)
    assert score_queries([q([[2, 4]], (2, 6))], "mmn", thresholds=(0.5,)).hits[(1, 0.5)] == 1
    assert score_queries([q([[2, 4]], (2, 6))], "2dtan", thresholds=(0.5,)).hits[(1, 0.5)] == 0


def test_mmn_nan_overlap_never_suppresses():
    # zero-length windows on one point overlap 0/0: MMN keeps all five, so the hit [0, 10] falls sixth;
    # 2D-TAN's NMS drops them and keeps the hit second
    segs = [[2, 2]] * 5 + [[0, 10]]
    assert nms_mmn(np.array(segs, float), np.linspace(0.9, 0.4, 6), 0.5) == [0, 1, 2, 3, 4, 5]
    assert score_queries([q(segs, (0, 10))], "mmn", thresholds=(0.5,)).hits[(5, 0.5)] == 0
    assert score_queries([q(segs, (0, 10))], "2dtan", thresholds=(0.5,)).hits[(5, 0.5)] == 1


def test_mmn_keeps_an_overlap_equal_to_the_threshold():
    # IoU([0, 3], [1, 4]) = 0.5: kept at 0.5 (only > suppresses); [1, 4] is the hit at 0.7 against (1, 4)
    assert nms_mmn(np.array([[0, 3], [1, 4]], float), np.array([0.9, 0.8]), 0.5) == [0, 1]
    res = score_queries([q([[0, 3], [1, 4]], (1, 4))], "mmn", thresholds=(0.7,), nms_threshold=0.5)
    assert res.hits == {(1, 0.7): 0, (5, 0.7): 1}


def test_mmn_runs_one_nms_over_all_candidates():
    # A suppresses B (IoU 6/14); B would suppress C (8/12) but a suppressed window suppresses nothing, and C
    # overlaps A by 4/16 only: C is kept, and every kept window is returned (no stop after 5)
    segs = np.array([[0, 10], [4, 14], [6, 16]], float)
    assert nms_mmn(segs, np.array([0.9, 0.8, 0.7]), 0.4) == [0, 2]
    many = np.array([[3 * i, 3 * i + 1] for i in range(7)], float)
    assert nms_mmn(many, np.linspace(0.9, 0.3, 7), 0.5) == list(range(7))


def test_mmn_ranks_by_score_ties_in_given_order():
    # given worst-first: MMN sorts by score, so [0, 10] is its top-1 (2D-TAN takes the list as given)
    assert score_queries([q([[0, 1], [0, 10]], (0, 10), scores=[0.2, 0.9])], "mmn", thresholds=(0.5,)).hits[(1, 0.5)] == 1
    assert score_queries([q([[0, 1], [0, 10]], (0, 10), scores=[0.2, 0.9])], "2dtan", thresholds=(0.5,)).hits[(1, 0.5)] == 0
    # equal scores keep the given order (the first is the hit)
    assert score_queries([q([[0, 10], [20, 30]], (0, 10), scores=[0.5, 0.5])], "mmn",
                         thresholds=(0.5,)).hits[(1, 0.5)] == 1


def test_mmn_zero_scores_are_no_candidates():
    # MMN reads candidates from the nonzero entries of its score map
    assert nms_mmn(np.array([[0, 10], [0, 1]], float), np.array([0.0, 0.5]), 0.5) == [1]
    res = score_queries([q([[0, 10], [0, 1]], (0, 10), scores=[0.0, 0.5]), q([[0, 10]], (0, 10), scores=[0.0])],
                        "mmn", thresholds=(0.5,))
    assert res.num_queries == 2 and res.hits == {(1, 0.5): 0, (5, 0.5): 0} and res.metrics["mIoU"] == 5.0


def test_mmn_no_candidate_and_nan_iou():
    res = score_queries([q([], (2, 6)), q([[5, 5]], (5, 5))], "mmn", thresholds=(0.0,))
    assert res.num_queries == 2 and res.hits == {(1, 0.0): 0, (5, 0.0): 0}   # NaN >= 0 is false
    assert res.metrics["mIoU"] == 0.0


# ------------------------------------------------------------------------------ moment_detr
def test_moment_detr_r1_takes_the_first_window_as_given():
    # the better-scored window second: R1 still grades the first (no sorting, no NMS)
    res = score_queries([q([[0, 1], [0, 10]], (0, 10), scores=[0.1, 0.9])], "moment_detr", thresholds=(0.5, 0.7))
    assert res.hits == {(1, 0.5): 0, (1, 0.7): 0} and res.metrics["mIoU"] == 10.0
    assert set(res.metrics) == {"R1@0.5", "R1@0.7", "mIoU", "mAP@0.5", "mAP@0.75", "mAP"}


def test_moment_detr_hit_is_inclusive():
    res = score_queries([q([[0, 7]], (0, 10))], "moment_detr", thresholds=(0.7,))
    assert res.hits[(1, 0.7)] == 1                           # IoU exactly 0.7
    assert type(res.metrics["mIoU"]) is float and res.metrics["mIoU"] == 70.0
    assert score_queries([q([[0, 7]], (0, 10))], "2dtan", thresholds=(0.7,)).hits[(1, 0.7)] == 0


def test_moment_detr_grades_against_the_best_of_several_windows():
    one = q([[10, 19]], (0, 2), gt_windows=[[0, 2], [10, 20]])
    res = score_queries([one], "moment_detr", thresholds=(0.7,))
    assert res.hits[(1, 0.7)] == 1 and res.metrics["mIoU"] == 90.0 and res.metrics["mAP@0.5"] == 50.0
    # the other protocols grade against ``gt`` alone
    assert score_queries([one], "2dtan", thresholds=(0.7,)).hits[(1, 0.7)] == 0


def test_moment_detr_zero_hull_is_iou_zero():
    res = score_queries([q([[5, 5]], (5, 5))], "moment_detr", thresholds=(0.0,))
    assert res.hits[(1, 0.0)] == 1 and res.metrics["mIoU"] == 0.0          # IoU 0, and 0 >= 0
    # in the mAP, the 0/0 IoU is NaN and NaN < t is false: it matches
    assert res.metrics["mAP"] == 100.0


def test_moment_detr_map_has_no_nms():
    # a duplicate of a matched window is a false positive ranked before the second window's true positive:
    # precision (1, 1/2, 2/3) at recall (1/2, 1/2, 1) -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 (an NMS would give 1)
    ap = average_precision_moment_detr(np.array([[0, 10], [0, 10], [20, 30]], float), np.array([0.9, 0.8, 0.7]),
                                       np.array([[0, 10], [20, 30]], float))
    np.testing.assert_allclose(ap, np.full(10, 5 / 6))


def test_moment_detr_map_sorts_by_score_and_reads_ten_windows():
    sorted_ap = average_precision_moment_detr(np.array([[20, 30], [0, 10]], float), np.array([0.1, 0.9]),
                                              np.array([[0, 10]], float))
    np.testing.assert_allclose(sorted_ap, np.ones(10))       # as given it would be 1/2
    misses = [[20 + i, 21 + i] for i in range(10)]
    eleventh = score_queries([q(misses + [[0, 10]], (0, 10), scores=np.linspace(0.9, 0.1, 11))], "moment_detr")
    tenth = score_queries([q(misses[:9] + [[0, 10]], (0, 10), scores=np.linspace(0.9, 0.1, 10))], "moment_detr")
    assert eleventh.metrics["mAP"] == 0.0 and tenth.metrics["mAP"] == 10.0


def test_moment_detr_map_matches_the_highest_iou_ground_truth():
    # P1 [0, 8.5] takes g1 = [0, 8] (IoU 0.94) over g0 = [0, 10] (0.85); P2 [0, 10] then takes g0: AP 1 at 0.85.
    # Taking the first ground truth above the threshold would give P1 g0 and leave P2 only g1 (IoU 0.8): AP 1/2.
    ap = average_precision_moment_detr(np.array([[0, 8.5], [0, 10]], float), np.array([0.9, 0.8]),
                                       np.array([[0, 10], [0, 8]], float))
    assert ap[MOMENT_DETR_AP_THRESHOLDS.index(0.85)] == 1.0


def test_moment_detr_thresholds_are_rounded_decimals():
    # numpy.linspace(0.5, 0.95, 10)[8] is 0.8999999999999999; Moment-DETR rounds it to 0.9, so an IoU of exactly
    # 0.8999999999999999 misses there
    assert MOMENT_DETR_AP_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    x = float(np.linspace(0.5, 0.95, 10)[8])
    ap = average_precision_moment_detr(np.array([[0, x]]), np.array([1.0]), np.array([[0, 1.0]]))
    assert ap.tolist() == [1.0] * 8 + [0.0, 0.0]


def test_moment_detr_query_without_candidate():
    res = score_queries([q([[0, 10]], (0, 10)), q([], (0, 10))], "moment_detr", thresholds=(0.5,))
    assert res.metrics["R1@0.5"] == 50.0 and res.metrics["mIoU"] == 50.0
    assert res.metrics["mAP"] == 100.0 and res.ap_queries == 1            # left out of the mAP mean


def test_2dtan_ties_keep_the_ranked_order_and_nan_counts_zero():
    # equal scores: the list's order decides (2D-TAN's reversed argsort would take the later one first)
    tie = score_queries([q([[20, 30], [0, 10]], (0, 10), scores=[0.5, 0.5])], "2dtan", thresholds=(0.5,))
    assert tie.hits[(1, 0.5)] == 0 and tie.hits[(5, 0.5)] == 1
    nan = score_queries([q([[5, 5]], (5, 5)), q([[0, 10]], (0, 10))], "2dtan", thresholds=(0.5,))
    assert nan.metrics["mIoU"] == 50.0                      # the 0/0 top-1 IoU counts 0


def test_csmgan_frame_conversion_and_clipping():
    # gt (2.6, 6.4) s -> frames [floor 2, ceil 7 - 1 = 6]; prediction [2, 7) s -> [2, 6]: IoU 1 (rounding the gt
    # would give [3, 6], IoU 0.8)
    assert score_queries([q([[2, 7]], (2.6, 6.4))], "csmgan", thresholds=(0.9,)).hits[(1, 0.9)] == 1
    # a window past the video's end is clipped to its last frame: [15, 25) s -> [15, 19] = gt [15, 19]
    # (unclipped [15, 24] would have IoU 0.5)
    assert score_queries([q([[15, 25]], (15, 20))], "csmgan", thresholds=(0.9,)).hits[(1, 0.9)] == 1


def test_moment_detr_map_ties_take_the_later_ground_truth():
    # P1 [0, 10] has IoU 0.5 with both g0 [0, 5] and g1 [5, 10] and takes g1 (the later); P2 [5, 10] then finds g1
    # matched and g0 below 0.5: a false positive, AP@0.5 = 1/2 (taking g0 first would give 1)
    ap = average_precision_moment_detr(np.array([[0, 10], [5, 10]], float), np.array([0.9, 0.8]),
                                       np.array([[0, 5], [5, 10]], float))
    assert ap[0] == 0.5


# --------------------------------------------------------------- the model, several windows
def _windows_split():
    """A split whose queries have one to three windows, and a tiny model over it."""
    from fian_fast import FIAN, FIANConfig
    from fian_fast.data import GroundingDataset, MemoryFeatures, Record, Vocabulary

    rng = np.random.default_rng(4)
    records = []
    for i in range(14):
        duration = float(rng.choice([30.0, 31.3, 150.7]))      # 31.3 and 150.7 are no float32 values
        cuts = np.sort(rng.uniform(0, duration, (int(rng.integers(1, 4)), 2)), axis=1).round(1)
        cuts[:, 1] = np.maximum(cuts[:, 1], cuts[:, 0] + 0.5)
        cuts = np.minimum(cuts, duration)
        windows = tuple((float(s), float(e)) for s, e in cuts)
        records.append(Record(f"v{i % 5}", duration, "a person opens the door", windows[0][0], windows[0][1], str(i),
                              windows if len(windows) > 1 else ()))
    features = MemoryFeatures({f"v{k}": rng.standard_normal((20 + 3 * k, 8)).astype(np.float32) for k in range(5)})
    vocab = Vocabulary(["a", "person", "opens", "the", "door"], rng.standard_normal((5, 2)), "none")
    ds = GroundingDataset(records, features, vocab, 16, 8)
    torch.manual_seed(3)
    cfg = FIANConfig.preset("synthetic", video_dim=8, word_dim=2, num_frames=16, hidden_size=16, num_heads=2,
                            ffn_size=32)
    return ds, FIAN(cfg).eval()


def test_several_windows_come_with_the_batches_not_the_dataset_order():
    from torch.utils.data import DataLoader

    from fian_fast.data import collate
    from fian_fast.evaluate import evaluate_model

    ds, model = _windows_split()
    assert sum(len(r.windows) > 1 for r in ds.records) >= 4
    thresholds = (0.1, 0.3, 0.5)
    # batches of one: the model computes each query alike in both orders
    ordered = evaluate_model(model, DataLoader(ds, batch_size=1, collate_fn=collate), PROTOCOLS, thresholds,
                             windows="each")
    shuffled = evaluate_model(model, DataLoader(ds, batch_size=1, shuffle=True, collate_fn=collate,
                                                generator=torch.Generator().manual_seed(0)),
                              PROTOCOLS, thresholds, windows="each", progress=True)
    first = evaluate_model(model, DataLoader(ds, batch_size=1, collate_fn=collate), PROTOCOLS, thresholds)
    for p in PROTOCOLS:
        assert shuffled[p].hits == ordered[p].hits and shuffled[p].ap_sums == pytest.approx(ordered[p].ap_sums)
        assert shuffled[p].miou_sum == pytest.approx(ordered[p].miou_sum, abs=1e-12)
        assert all(ordered[p].hits[k] >= first[p].hits[k] for k in first[p].hits)
    assert any(ordered[p].hits != first[p].hits for p in ("2dtan", "csmgan", "mmn"))   # the extra windows count
    # moment_detr grades every window by its own rule whatever the policy
    assert first["moment_detr"].hits == ordered["moment_detr"].hits


def test_each_window_is_graded_as_a_query_of_its_own():
    """``windows="each"``: a hit when any window is hit, the best window's mIoU term, each window
    graded exactly as a one-window query of it is."""
    from torch.utils.data import DataLoader

    from fian_fast.data import collate
    from fian_fast.evaluate import evaluate_model
    from model_inputs import each_window_alone

    ds, model = _windows_split()
    thresholds = (0.1, 0.3, 0.5)
    for protocol in ("2dtan", "csmgan", "mmn"):
        got = evaluate_model(model, DataLoader(ds, batch_size=1, collate_fn=collate), (protocol,), thresholds,
                             windows="each")[protocol]
        want_hits, want_miou = each_window_alone(model, ds, protocol, thresholds, got.hits)
        assert got.num_queries == len(ds) and got.hits == want_hits
        assert got.miou_sum == pytest.approx(want_miou, abs=1e-12)


def test_windows_policy_is_checked():
    with pytest.raises(ValueError, match="score_queries: windows should be one of"):
        score_queries([], "2dtan", windows="best")


def test_ground_truth_is_graded_as_the_annotation_gives_it():
    """The batch carries the annotation's seconds (float64) beside the model's float32 fractions,
    and the evaluator grades those: an end of 6.0 s in a 30.0 s video of 20 frames is frame
    boundary 4 exactly, so csmgan's end frame is ceil(4) - 1 = 3 (through the float32 fraction,
    6.0000001 s, it would be 4), and mmn's ground truth is float32(6.0) = 6.0."""
    from torch.utils.data import DataLoader

    from fian_fast import FIAN, FIANConfig
    from fian_fast.data import GroundingDataset, MemoryFeatures, Record, Vocabulary, collate
    from fian_fast.evaluate import rank_queries
    from fian_fast.metrics import gt_frames_csmgan

    rng = np.random.default_rng(0)
    records = [Record("v0", 30.0, "a person opens the door", 3.0, 6.0, "0")]
    features = MemoryFeatures({"v0": rng.standard_normal((20, 8)).astype(np.float32)})
    vocab = Vocabulary(["a", "person", "opens", "the", "door"], rng.standard_normal((5, 2)), "none")
    ds = GroundingDataset(records, features, vocab, 20, 8)
    batch = collate([ds[0]])
    assert batch.gt_seconds.tolist() == [[3.0, 6.0]] and batch.duration_seconds.tolist() == [30.0]
    assert float(batch.gt[0, 1]) * float(batch.durations[0]) != 6.0          # the float32 form is not exact
    cfg = FIANConfig.preset("synthetic", video_dim=8, word_dim=2, num_frames=20, hidden_size=16, num_heads=2,
                            ffn_size=32)
    (ranking,) = rank_queries(FIAN(cfg), DataLoader(ds, collate_fn=collate))
    assert ranking.gt == (3.0, 6.0) and ranking.duration == 30.0 and ranking.length == 20
    assert gt_frames_csmgan(ranking.gt, ranking.length, ranking.duration) == (2, 3)
    assert gt_frames_csmgan((float(batch.gt[0, 0]) * 30.0, float(batch.gt[0, 1]) * 30.0), 20, 30.0) == (2, 4)
