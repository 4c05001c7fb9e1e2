"""The arithmetic of each evaluation protocol: IoU, NMS and average precision, rule for rule.

Each function names the protocol whose evaluator it reproduces; the rules themselves, with the
file each protocol comes from, are listed in :mod:`fian_fast.evaluate` and pinned by hand-made
cases in ``tests/test_evaluate.py`` and ``tests/test_evaluate_mmn.py``. Segments are ``[K, 2]``
arrays of (start, end); 2dtan, csmgan and moment_detr compute in float64, mmn in float32 as MMN
does.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["MOMENT_DETR_AP_THRESHOLDS", "MOMENT_DETR_MAX_WINDOWS", "iou_seconds", "iou_frames_csmgan", "iou_mmn",
           "nms_2dtan", "nms_csmgan", "nms_mmn", "frames_csmgan", "gt_frames_csmgan", "r1_iou_moment_detr",
           "average_precision_moment_detr"]

#: Moment-DETR's mAP thresholds 0.5:0.05:0.95, as the decimals it rounds them to
MOMENT_DETR_AP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Moment-DETR's mAP reads the first 10 windows of each query
MOMENT_DETR_MAX_WINDOWS = 10


# ------------------------------------------------------------------------------------ IoU
def iou_seconds(segments: np.ndarray, gt: Sequence[float]) -> np.ndarray:
    """2D-TAN IoU of ``segments`` [K, 2] with one ``gt`` (start, end), float64: ``inter / hull``
    (0 for disjoint segments; NaN for two empty segments at one point, never a hit)."""
    s = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    inter = np.maximum(0.0, np.minimum(s[:, 1], gt[1]) - np.maximum(s[:, 0], gt[0]))
    union = np.maximum(s[:, 1], gt[1]) - np.minimum(s[:, 0], gt[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def iou_mmn(segments: np.ndarray, gt: Sequence[float]) -> np.ndarray:
    """MMN's ``iou`` in float32, as MMN computes it on its float32 moments and float32 ground
    truth: both cast to float32, ``inter = min(ends) - max(starts)`` clamped at 0, divided by
    ``hull = max(ends) - min(starts)``, every step a float32 operation. Returns float32 [K]
    (NaN for two empty segments at one point)."""
    s = np.asarray(segments, dtype=np.float32).reshape(-1, 2)
    g = np.asarray(gt, dtype=np.float32).reshape(2)
    inter = np.minimum(s[:, 1], g[1]) - np.maximum(s[:, 0], g[0])
    union = np.maximum(s[:, 1], g[1]) - np.minimum(s[:, 0], g[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.maximum(inter, np.float32(0)) / union


def iou_frames_csmgan(segments: np.ndarray, gt: Sequence[float]) -> np.ndarray:
    """CSMGAN IoU on inclusive frame indices: ``(inter + 1) / (union + 1)``, 0 when negative."""
    s = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    inter = np.minimum(s[:, 1], gt[1]) - np.maximum(s[:, 0], gt[0])
    union = np.maximum(s[:, 1], gt[1]) - np.minimum(s[:, 0], gt[0])
    iou = (inter + 1.0) / (union + 1.0)
    return np.where(iou < 0, 0.0, iou)


def _overlap(seg: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``inter / (len + len - inter)`` of one segment with each of ``others`` (NaN for 0/0)."""
    inter = np.maximum(0.0, np.minimum(seg[1], others[:, 1]) - np.maximum(seg[0], others[:, 0]))
    denom = (seg[1] - seg[0]) + (others[:, 1] - others[:, 0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / denom


# ------------------------------------------------------------------------------------ NMS
def nms_2dtan(segments: np.ndarray, threshold: float = 0.5, top_k: int = 5) -> List[int]:
    """Greedy NMS over ``segments`` [K, 2] already ranked best first: keep the first, drop every
    later one whose IoU with it is ``> threshold``, repeat; stop once ``top_k`` are kept."""
    order = np.arange(len(segments))
    segs = np.asarray(segments, dtype=np.float64)
    keep: List[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if len(keep) == top_k:
            break
        ovr = _overlap(segs[i], segs[order[1:]])
        order = order[1:][ovr <= threshold]  # NaN overlaps (empty pairs) are dropped, as in 2D-TAN
    return keep


def nms_csmgan(segments: np.ndarray, scores: np.ndarray, indices: np.ndarray, overlap: float,
               top_k: Optional[int] = None) -> List[int]:
    """CSMGAN's NMS: pick the highest score (ties: higher candidate index), drop every remaining
    segment whose overlap with it is ``> overlap``, repeat. Returns positions into ``segments``
    in pick order (at most ``top_k``)."""
    segs = np.asarray(segments, dtype=np.float64)
    # ascending by (score, index) then popped from the end == descending, ties to the higher index
    order = list(np.lexsort((np.asarray(indices), np.asarray(scores, dtype=np.float64))))
    picks: List[int] = []
    while order:
        i = order.pop()
        picks.append(int(i))
        if top_k is not None and len(picks) == top_k:
            break
        if not order:
            break
        rest = np.asarray(order)
        laps = _overlap(segs[i], segs[rest])
        order = [int(j) for j, lap in zip(rest, laps) if lap <= overlap]
    return picks


def nms_mmn(segments: np.ndarray, scores: np.ndarray, threshold: float) -> List[int]:
    """MMN's NMS, in float32: drop zero scores, rank by score (descending, ties in the given
    order), then every segment not yet suppressed suppresses the later ones whose
    :func:`iou_mmn` with it is ``> threshold`` (a float32 comparison with ``float32(threshold)``,
    as a float32 tensor meets a Python float); a NaN IoU never suppresses. Returns the kept
    positions into ``segments``, best first (all of them, no early stop)."""
    segs = np.asarray(segments, dtype=np.float32).reshape(-1, 2)
    sc = np.asarray(scores, dtype=np.float32).reshape(-1)
    limit = np.float32(threshold)
    order = [int(i) for i in np.argsort(-sc, kind="stable") if sc[i] != 0]
    suppressed = np.zeros(len(order), dtype=bool)
    for a in range(len(order) - 1):
        if suppressed[a]:
            continue
        with np.errstate(invalid="ignore"):
            suppressed[a + 1:] |= iou_mmn(segs[order[a + 1:]], segs[order[a]]) > limit
    return [i for i, s in zip(order, suppressed) if not s]


# -------------------------------------------------------------------------- csmgan frames
def frames_csmgan(segments: np.ndarray, length: int, duration: float) -> np.ndarray:
    """Predicted windows ``[a, b)`` seconds as CSMGAN's inclusive frame values ``[a, b - 1]`` of a
    video of ``length`` frames, clipped to ``[0, length - 1]`` (fractional), an end below its
    start raised to the start. float64 [K, 2]."""
    frames = np.asarray(segments, dtype=np.float64).reshape(-1, 2) / duration * length
    pred = np.stack([np.clip(frames[:, 0], 0, length - 1), np.clip(frames[:, 1] - 1, 0, length - 1)], axis=1)
    pred[:, 1] = np.maximum(pred[:, 1], pred[:, 0])
    return pred


def gt_frames_csmgan(gt: Sequence[float], length: int, duration: float) -> Tuple[float, float]:
    """Ground truth ``(s, e)`` seconds as CSMGAN's inclusive frames
    ``[floor(s / duration * L), ceil(e / duration * L) - 1]``, the end raised to the start."""
    gs = max(0, math.floor(gt[0] / duration * length))
    ge = min(length - 1, max(gs, math.ceil(gt[1] / duration * length) - 1))
    return float(gs), float(ge)


# -------------------------------------------------------------------------------- moment_detr
def r1_iou_moment_detr(top: Sequence[float], gt_windows: np.ndarray) -> float:
    """Moment-DETR's R1 IoU of the first window ``top`` against ``gt_windows`` [G, 2]: the ground
    truth of highest ``inter / (len + len - inter)`` with it (the first on ties; a NaN counts as the
    highest, as ``numpy.argmax`` takes it), then ``inter / hull`` with 0 where ``hull == 0``."""
    top = np.asarray(top, dtype=np.float64).reshape(2)
    gts = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(top[1], gts[:, 1]) - np.maximum(top[0], gts[:, 0]), 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        cross = inter / ((top[1] - top[0]) + (gts[:, 1] - gts[:, 0]) - inter)
    g = gts[int(np.argmax(cross))]
    inter = max(0.0, min(top[1], g[1]) - max(top[0], g[0]))
    hull = max(top[1], g[1]) - min(top[0], g[0])
    return float(inter / hull) if hull != 0 else 0.0


def average_precision_moment_detr(windows: np.ndarray, scores: np.ndarray, gt_windows: np.ndarray,
                                  thresholds: Sequence[float] = MOMENT_DETR_AP_THRESHOLDS) -> np.ndarray:
    """One query's AP at each IoU threshold, by the rules of Moment-DETR's
    ``compute_average_precision_detection``: predictions sorted by score (stable), greedy matching
    to the unmatched ground truth of highest IoU when it is ``>= t``, VOC interpolated area under
    precision-recall. Returns float64 [len(thresholds)]."""
    pred = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    gts = np.asarray(gt_windows, dtype=np.float64).reshape(-1, 2)
    ap = np.zeros(len(thresholds))
    if len(pred) == 0:
        return ap
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    pred = pred[order]
    left = np.maximum(pred[:, None, 0], gts[None, :, 0])
    right = np.minimum(pred[:, None, 1], gts[None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = (pred[:, 1] - pred[:, 0])[:, None] + (gts[:, 1] - gts[:, 0])[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union                                                # [P, G]
    for ti, t in enumerate(thresholds):
        matched = np.zeros(len(gts), dtype=bool)
        tp = np.zeros(len(pred))
        for p in range(len(pred)):
            # highest IoU first; NaN sorts last ascending, so first here; ties: the later gt first
            for g in np.argsort(iou[p], kind="stable")[::-1]:
                if iou[p, g] < t:
                    break
                if matched[g]:
                    continue
                matched[g] = True
                tp[p] = 1
                break
        tp_cum = np.cumsum(tp)
        recall = tp_cum / len(gts)
        precision = tp_cum / np.arange(1, len(pred) + 1)
        # VOC: precision made non-increasing from the right, summed where recall steps
        prec = np.concatenate([[0.0], precision, [0.0]])
        rec = np.concatenate([[0.0], recall, [1.0]])
        prec = np.maximum.accumulate(prec[::-1])[::-1]
        steps = np.nonzero(rec[1:] != rec[:-1])[0] + 1
        ap[ti] = float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))
    return ap
