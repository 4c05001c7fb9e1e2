"""Evaluation: R@n, IoU@m, mIoU and mAP under the field's named protocols (docs/protocols.md, "Metrics").

The evaluator ranks, for each query, every valid candidate of the model by score, with the
model's own refinement (what ``FIAN.decode`` returns with ``top_n = N`` and no suppression:
segments clipped to the video, ties in score ranked by the lower candidate index), and hands the
ranked list (a :class:`QueryRanking`, seconds) to a protocol, which applies its own NMS and hit
test. Each protocol below names the file it reproduces and every rule it follows; every rule is
pinned by a hand-made case in ``tests/test_evaluate.py`` that fails under the neighbouring rule.
Hit counts are integers and exact; metrics are percentages rounded to two decimals.

``2dtan`` (default) — 2D-TAN, ``lib/core/eval.py`` (microsoft/2D-TAN)
    * IoU in seconds, ``inter / hull`` (``hull = max(ends) - min(starts)``, which is the union
      whenever the two overlap; disjoint segments give 0).
    * One greedy NMS over the ranked list as given: keep the first, drop every later segment
      whose overlap ``inter / (len_i + len_j - inter)`` with it is ``> nms_threshold`` (an overlap
      equal to the threshold is kept), repeat; stop once ``max(recalls)`` are kept. A 0/0 overlap
      (two zero-length segments) is NaN and fails ``<= threshold``: the later one is dropped.
      ``nms_threshold`` 0.5 by default (2D-TAN's ActivityNet configs and all its conv configs;
      its pool configs use 0.45 for Charades and 0.4 for TACoS: ``--nms-threshold``).
    * Ties in score keep the ranked list's order (2D-TAN's reversed argsort of its score map
      would put the higher map index first).
    * A hit is ``IoU > m`` (strict); R@n looks at the first n kept; a NaN IoU is a miss.
    * mIoU: mean IoU of the top-1 segment; a NaN top-1 IoU counts 0 (2D-TAN's mean would turn
      NaN).
    * No clipping beyond the model's (2D-TAN's segments come from its map, inside the video).
    * A query with no candidate is a miss with IoU 0 (2D-TAN's ``iou`` would fail on it).
``csmgan`` — CSMGAN, ``code/runners/runner_final.py`` (``eval_new``) and ``code/criteria.py``
(liudaizong/CSMGAN; ``criteria.py`` is CMIN's); the protocol of FIAN's group, probably the paper's
    * IoU on frame indices of the fixed-length sequence, ``(inter + 1) / (union + 1)`` with
      inclusive ends (``inter = min(ends) - max(starts)``, ``union = max(ends) - min(starts)``),
      0 when negative.
    * Frame indices: the ground truth ``(s, e)`` seconds of a video of ``L`` frames becomes
      ``[floor(s / duration * L), ceil(e / duration * L) - 1]``; a predicted window ``[a, b)``
      (frames) becomes ``[a, b - 1]`` clipped to ``[0, L - 1]`` (values stay fractional). An end
      below its start — a window shorter than one frame — is raised to the start, for the
      prediction and the ground truth alike.
    * A separate NMS per threshold m, at overlap ``m - 0.05``: pick the highest score, drop every
      remaining window whose plain overlap ``inter / (len_i + len_j - inter)`` (same frame values)
      is ``> m - 0.05``, repeat. Ties in score go to the higher candidate index first (a stable
      ascending sort popped from its end).
    * A hit is ``IoU >= m``; a NaN IoU is a miss.
    * mIoU: mean frame IoU of the top-1 window (``eval_new`` reports none); a NaN top-1 IoU
      counts 0.
    * A query with no candidate is a miss with IoU 0.
``mmn`` — MMN, ``mmn/data/datasets/evaluation.py`` with ``iou`` of ``mmn/data/datasets/utils.py``
(MCG-NJU/MMN)
    * IoU in seconds, ``max(inter, 0) / hull`` (as 2dtan).
    * Candidates are the nonzero entries of MMN's score map: a candidate whose score is exactly 0
      is no candidate.
    * Ranked by score, descending; ties keep the ranked list's order (MMN's ``torch.sort`` is not
      stable, so its tie order is unspecified).
    * One NMS over **all** candidates: every candidate not yet suppressed suppresses the later
      ones whose IoU with it is ``> nms_threshold`` (equal is kept); a 0/0 IoU (two zero-length
      segments) is NaN, and ``NaN > threshold`` is false: it never suppresses.
      ``nms_threshold`` 0.5, 0.4 for TACoS (MMN's configs: :func:`default_nms_threshold`).
    * A hit is ``IoU >= m``; R@n looks at the first n kept; a NaN IoU is a miss.
    * mIoU (MMN reports none): mean IoU of the top-1 kept segment; NaN counts 0.
    * No clipping (MMN's segments come from its map, inside the video).
    * A query with no candidate (or only zero scores) is a miss with IoU 0.
``moment_detr`` — Moment-DETR's standalone evaluator, ``standalone_eval/eval.py`` and
``standalone_eval/utils.py`` (jayleicn/moment_detr; lighthouse uses the same)
    * No NMS. The ground truth is every window of the query (``QueryRanking.gt_windows``;
      QVHighlights has several), else its one ``gt``.
    * R1@m: the **first window as given** (not re-sorted by score); among the ground-truth
      windows the one with the highest IoU ``inter / (len_p + len_g - inter)`` with it is chosen
      (the first on ties; a NaN IoU counts as the highest, as ``numpy.argmax`` takes it); then its
      IoU ``inter / hull`` is computed with 0 where ``hull == 0``, and a hit is ``IoU >= m``. Only
      n = 1 is reported.
    * mAP: per query, the first 10 windows as given, re-sorted by score (descending, ties in the
      given order), are matched greedily to the ground-truth windows at each IoU threshold of
      0.5:0.05:0.95: a window takes the unmatched ground truth of highest IoU
      ``inter / (len_p + len_g - inter)`` (ties: the later ground-truth window first) if that IoU
      is ``>= t``, else it is a false positive; a second window on a matched ground truth is a
      false positive. AP is the VOC interpolated area under precision-recall (recall = true
      positives / ground-truth windows). A NaN IoU (a zero-length window against a zero-length
      ground truth, which the loaders never produce) passes ``not IoU < t`` and matches. Per
      threshold the AP is averaged over the queries; ``mAP@0.5``, ``mAP@0.75`` and ``mAP`` (the
      mean over the ten thresholds) are reported.
    * mIoU (Moment-DETR reports none): mean of the R1 IoU.
    * A query with no candidate: R1 miss with IoU 0 (Moment-DETR's ``eval.py`` would fail on it);
      left out of the mAP mean, as it never enters Moment-DETR's ``pred_qid2data``.

``2dtan`` is the default because it is the stricter and more widely reproduced of the field's
recall protocols. Every report names its protocol.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["PROTOCOLS", "SUPPRESSING", "DEFAULT_PROTOCOL", "THRESHOLDS", "RECALLS", "MOMENT_DETR_AP_THRESHOLDS",
           "EvalResult", "QueryRanking", "default_nms_threshold", "nms_2dtan", "nms_csmgan", "nms_mmn", "iou_seconds",
           "iou_frames_csmgan", "average_precision_moment_detr", "score_queries", "ranked_segments", "evaluate_model"]

PROTOCOLS = ("2dtan", "csmgan", "mmn", "moment_detr")
#: the protocols with one NMS threshold, set by ``nms_threshold`` / ``--nms-threshold``
SUPPRESSING = ("2dtan", "mmn")
DEFAULT_PROTOCOL = "2dtan"
RECALLS = (1, 5)
#: IoU thresholds m reported per dataset.
THRESHOLDS = {"charades": (0.5, 0.7), "activitynet": (0.3, 0.5, 0.7), "tacos": (0.1, 0.3, 0.5, 0.7),
              "synthetic": (0.3, 0.5, 0.7), "lighthouse": (0.3, 0.5, 0.7)}
#: Moment-DETR's mAP thresholds 0.5:0.05:0.95, as the decimals it rounds them to
MOMENT_DETR_AP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Moment-DETR's mAP reads the first 10 windows of each query
MOMENT_DETR_MAX_WINDOWS = 10


def default_nms_threshold(protocol: str, dataset: Optional[str] = None) -> Optional[float]:
    """The NMS threshold of ``protocol``'s own configs: 2dtan 0.5; mmn 0.5, 0.4 for ``tacos``;
    None for the protocols without one fixed threshold (csmgan, moment_detr)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"default_nms_threshold: protocol should be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "2dtan":
        return 0.5
    if protocol == "mmn":
        return 0.4 if dataset == "tacos" else 0.5
    return None


@dataclass
class QueryRanking:
    """One query's ranked candidates: ``segments`` float64 [K, 2] seconds (best first), ``scores``
    [K], ``indices`` [K] candidate indices, the video's ``length`` in frames and ``duration`` in
    seconds, the ground truth ``gt`` (start, end) seconds, and optionally all its ground-truth
    windows ``gt_windows`` float64 [G, 2] seconds (QVHighlights has several; only ``moment_detr``
    reads them, the other protocols grade against ``gt``)."""

    segments: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    length: int
    duration: float
    gt: Tuple[float, float]
    gt_windows: Optional[np.ndarray] = None

    @property
    def windows(self) -> np.ndarray:
        """float64 [G, 2]: ``gt_windows``, or ``[gt]`` when there are none."""
        if self.gt_windows is None or len(self.gt_windows) == 0:
            return np.asarray([self.gt], dtype=np.float64)
        return np.asarray(self.gt_windows, dtype=np.float64).reshape(-1, 2)


@dataclass
class EvalResult:
    """``hits[(n, m)]`` queries with a hit among the top n at threshold m; ``metrics`` in percent
    (``"R1@0.5"``, ``"R5@0.5"``, ..., ``"mIoU"``, and for moment_detr ``"mAP@0.5"``,
    ``"mAP@0.75"``, ``"mAP"``). ``ap_sums[t]`` sums the per-query AP at IoU threshold t over the
    ``ap_queries`` queries that have a prediction (moment_detr only)."""

    protocol: str
    num_queries: int
    hits: Dict[Tuple[int, float], int] = field(default_factory=dict)
    miou_sum: float = 0.0
    ap_sums: Dict[float, float] = field(default_factory=dict)
    ap_queries: int = 0
    nms_threshold: Optional[float] = None

    @property
    def metrics(self) -> Dict[str, float]:
        out = {}
        n = max(self.num_queries, 1)
        for (r, m), h in sorted(self.hits.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            out[f"R{r}@{m:g}"] = round(100.0 * h / n, 2)
        out["mIoU"] = round(100.0 * self.miou_sum / n, 2)
        if self.ap_sums:
            per = {t: v / max(self.ap_queries, 1) for t, v in self.ap_sums.items()}
            out["mAP@0.5"] = round(100.0 * per[0.5], 2)
            out["mAP@0.75"] = round(100.0 * per[0.75], 2)
            out["mAP"] = round(100.0 * float(np.mean(list(per.values()))), 2)
        return out

    def to_json(self) -> dict:
        obj = {"protocol": self.protocol, "num_queries": self.num_queries, "metrics": self.metrics}
        if self.nms_threshold is not None:
            obj["nms_threshold"] = self.nms_threshold
        return obj

    def summary(self) -> str:
        nms = f" (NMS {self.nms_threshold:g})" if self.nms_threshold is not None else ""
        return (f"[{self.protocol}] {self.num_queries} queries{nms}: "
                + "  ".join(f"{k} {v:.2f}" for k, v in self.metrics.items()))


# ----------------------------------------------------------------------------- IoU and NMS
def iou_seconds(segments: np.ndarray, gt: Sequence[float]) -> np.ndarray:
    """2D-TAN / MMN IoU of ``segments`` [K, 2] with one ``gt`` (start, end): ``inter / hull``
    (0 for disjoint segments; NaN for two empty segments at one point, never a hit)."""
    s = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    inter = np.maximum(0.0, np.minimum(s[:, 1], gt[1]) - np.maximum(s[:, 0], gt[0]))
    union = np.maximum(s[:, 1], gt[1]) - np.minimum(s[:, 0], gt[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


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
    """MMN's NMS: drop zero scores, rank by score (descending, ties in the given order), then
    every segment not yet suppressed suppresses the later ones whose IoU (``inter / hull``) with
    it is ``> threshold``; a NaN IoU never suppresses. Returns the kept positions into
    ``segments``, best first (all of them, no early stop)."""
    segs = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = [int(i) for i in np.argsort(-sc, kind="stable") if sc[i] != 0]
    suppressed = np.zeros(len(order), dtype=bool)
    for a in range(len(order) - 1):
        if suppressed[a]:
            continue
        later = segs[order[a + 1:]]
        with np.errstate(invalid="ignore"):
            suppressed[a + 1:] |= iou_seconds(later, segs[order[a]]) > threshold
    return [i for i, s in zip(order, suppressed) if not s]


def average_precision_moment_detr(windows: np.ndarray, scores: np.ndarray, gt_windows: np.ndarray,
                                  thresholds: Sequence[float] = MOMENT_DETR_AP_THRESHOLDS) -> np.ndarray:
    """One query's AP at each IoU threshold, by the rules of Moment-DETR's
    ``compute_average_precision_detection`` (see the module docstring): predictions sorted by
    score (stable), greedy matching to the unmatched ground truth of highest IoU when it is
    ``>= t``, VOC interpolated area under precision-recall. Returns float64 [len(thresholds)]."""
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


# ------------------------------------------------------------------------------ protocols
def _frames_csmgan(q: QueryRanking) -> Tuple[np.ndarray, Tuple[float, float]]:
    L = q.length
    frames = np.asarray(q.segments, dtype=np.float64) / q.duration * L
    pred = np.stack([np.clip(frames[:, 0], 0, L - 1), np.clip(frames[:, 1] - 1, 0, L - 1)], axis=1)
    pred[:, 1] = np.maximum(pred[:, 1], pred[:, 0])
    gs = max(0, math.floor(q.gt[0] / q.duration * L))
    ge = min(L - 1, max(gs, math.ceil(q.gt[1] / q.duration * L) - 1))
    return pred, (float(gs), float(ge))


def _r1_moment_detr(q: QueryRanking) -> float:
    """The R1 IoU of the first window as given against its best-matching ground-truth window."""
    top = np.asarray(q.segments, dtype=np.float64).reshape(-1, 2)[0]
    gts = q.windows
    inter = np.clip(np.minimum(top[1], gts[:, 1]) - np.maximum(top[0], gts[:, 0]), 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        cross = inter / ((top[1] - top[0]) + (gts[:, 1] - gts[:, 0]) - inter)
    g = gts[int(np.argmax(cross))]                       # numpy.argmax: the first NaN, else the first maximum
    inter = max(0.0, min(top[1], g[1]) - max(top[0], g[0]))
    hull = max(top[1], g[1]) - min(top[0], g[0])
    return float(inter / hull) if hull != 0 else 0.0


def score_queries(queries: Iterable[QueryRanking], protocol: str = DEFAULT_PROTOCOL,
                  thresholds: Sequence[float] = (0.3, 0.5, 0.7), recalls: Sequence[int] = RECALLS,
                  nms_threshold: Optional[float] = None) -> EvalResult:
    """R@n, IoU@m hit counts and mIoU (and mAP for moment_detr) of ranked predictions under
    ``protocol``. ``nms_threshold`` sets the NMS of 2dtan and mmn (None: 0.5); moment_detr reports
    R@1 only, whatever ``recalls`` holds."""
    fn = "score_queries"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{fn}: protocol should be one of {PROTOCOLS}, got {protocol!r}")
    if nms_threshold is not None:
        if protocol not in SUPPRESSING:
            raise ValueError(f"{fn}: nms_threshold applies to the protocols {SUPPRESSING}, got it for {protocol!r}")
        if isinstance(nms_threshold, bool) or not isinstance(nms_threshold, (int, float)) or \
                not 0.0 <= nms_threshold <= 1.0:
            raise ValueError(f"{fn}: nms_threshold should be in [0, 1], got {nms_threshold!r}")
    nms = float(nms_threshold if nms_threshold is not None else default_nms_threshold(protocol) or 0.0)
    if protocol == "moment_detr":
        recalls = (1,)
    result = EvalResult(protocol, 0, {(r, m): 0 for m in thresholds for r in recalls},
                        nms_threshold=nms if protocol in SUPPRESSING else None)
    if protocol == "moment_detr":
        result.ap_sums = {t: 0.0 for t in MOMENT_DETR_AP_THRESHOLDS}
    max_r = max(recalls)
    for q in queries:
        result.num_queries += 1
        if len(q.segments) == 0:
            continue
        if protocol == "2dtan":
            keep = nms_2dtan(q.segments, nms, max_r)
            iou = iou_seconds(np.asarray(q.segments)[keep], q.gt)
            result.miou_sum += float(np.nan_to_num(iou[0]))
            for m in thresholds:
                hit = iou > m
                for r in recalls:
                    result.hits[(r, m)] += bool(hit[:r].any())
        elif protocol == "csmgan":
            pred, gt = _frames_csmgan(q)
            top = nms_csmgan(pred, q.scores, q.indices, 1.0, 1)
            result.miou_sum += float(np.nan_to_num(iou_frames_csmgan(pred[top], gt)[0]))
            for m in thresholds:
                picks = nms_csmgan(pred, q.scores, q.indices, m - 0.05, max_r)
                hit = iou_frames_csmgan(pred[picks], gt) >= m
                for r in recalls:
                    result.hits[(r, m)] += bool(hit[:r].any())
        elif protocol == "mmn":
            keep = nms_mmn(q.segments, q.scores, nms)[:max_r]
            if not keep:
                continue
            iou = iou_seconds(np.asarray(q.segments)[keep], q.gt)
            result.miou_sum += float(np.nan_to_num(iou[0]))
            for m in thresholds:
                with np.errstate(invalid="ignore"):
                    hit = iou >= m
                for r in recalls:
                    result.hits[(r, m)] += bool(hit[:r].any())
        else:
            iou = _r1_moment_detr(q)
            result.miou_sum += iou
            for m in thresholds:
                result.hits[(1, m)] += bool(iou >= m)
            k = MOMENT_DETR_MAX_WINDOWS
            ap = average_precision_moment_detr(q.segments[:k], q.scores[:k], q.windows)
            result.ap_queries += 1
            for t, v in zip(MOMENT_DETR_AP_THRESHOLDS, ap):
                result.ap_sums[t] += float(v)
    return result


# ------------------------------------------------------------------------------ the model
def ranked_segments(out, durations: torch.Tensor, gt_fraction: torch.Tensor,
                    gt_windows: Optional[Sequence[Optional[np.ndarray]]] = None) -> List[QueryRanking]:
    """Every valid candidate of each query, refined and ranked as ``model.decode`` does with
    ``top_n = N`` and no suppression (``nms_threshold = 1``), vectorized: offsets are taken relative
    to the window clipped to the video, ``window + offsets`` is re-ordered and clipped to
    ``[0, video_lengths[b]]``, candidates are ranked by logit (ties: lower index), frames become
    seconds by ``frames / video_lengths[b] * durations[b]``. ``tests/test_evaluate.py`` holds this
    equal to ``model.decode``. ``gt_windows`` (optional, per query a float [G, 2] array of every
    ground-truth window in seconds, or None) becomes :attr:`QueryRanking.gt_windows`."""
    from .model.loss import clip_candidates
    from .reference.decode import refine_segments

    with torch.no_grad():
        cand = out.candidates.float()
        lengths = out.video_lengths
        offsets = out.offsets.float() + (clip_candidates(cand, lengths) - cand)
        refined = refine_segments(cand, offsets, lengths)                       # [B, N, 2] frames
        logits = out.logits.float().masked_fill(~out.valid, float("-inf"))
        order = torch.sort(logits, dim=1, descending=True, stable=True).indices
        seconds = refined / lengths.to(refined.dtype)[:, None, None] * durations.to(refined.dtype)[:, None, None]
        seconds = torch.gather(seconds, 1, order[..., None].expand(-1, -1, 2)).cpu().numpy()
        scores = torch.sigmoid(torch.gather(out.logits.float(), 1, order)).cpu().numpy()
        counts = out.valid.sum(1).cpu().tolist()
    order = order.cpu().numpy()
    lens = lengths.cpu().tolist()
    durs = durations.float().cpu().tolist()
    gts = gt_fraction.float().cpu().numpy()
    windows = list(gt_windows) if gt_windows is not None else [None] * len(counts)
    return [QueryRanking(seconds[b, :k].astype(np.float64), scores[b, :k], order[b, :k], int(lens[b]), durs[b],
                         (float(gts[b, 0]) * durs[b], float(gts[b, 1]) * durs[b]),
                         None if windows[b] is None else np.asarray(windows[b], dtype=np.float64).reshape(-1, 2))
            for b, k in enumerate(counts)]


@torch.no_grad()
def evaluate_model(model, loader, protocols: Sequence[str] = (DEFAULT_PROTOCOL,),
                   thresholds: Sequence[float] = (0.3, 0.5, 0.7), device="cpu", autocast: bool = False,
                   progress: bool = False, nms_threshold: Optional[float] = None,
                   dataset: Optional[str] = None) -> Dict[str, EvalResult]:
    """Run ``model`` over ``loader`` (yielding :class:`~fian_fast.data.Batch` made by ``collate``, which
    checked their values: the model takes the trusted path) and score it under
    each protocol. The model is put in eval mode and restored afterwards.

    ``nms_threshold`` sets the NMS of the protocols in :data:`SUPPRESSING` (the others ignore
    it); None takes each one's :func:`default_nms_threshold` for ``dataset``. A batch carrying
    ``gt_windows`` (per query a [G, 2] array of every ground-truth window, seconds) is graded
    against all of them by ``moment_detr``."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    rankings: List[QueryRanking] = []
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            batch = batch.to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                out = model(*batch.model_inputs(), validate=False)   # checked by the loader's collate
            out = out._replace(logits=out.logits.float(), offsets=out.offsets.float())
            rankings.extend(ranked_segments(out, batch.durations.float(), batch.gt,
                                            getattr(batch, "gt_windows", None)))
    finally:
        model.train(was_training)
    results = {}
    for p in protocols:
        nms = None
        if p in SUPPRESSING:
            nms = nms_threshold if nms_threshold is not None else default_nms_threshold(p, dataset)
        results[p] = score_queries(rankings, p, thresholds, nms_threshold=nms)
    return results
