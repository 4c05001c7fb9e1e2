"""Evaluation: R@n, IoU@m, mIoU and mAP under the field's named protocols (docs/protocols.md, "Metrics").

The evaluator ranks, for each query, every valid candidate of the model by score, with the
model's own refinement (what ``FIAN.decode`` returns with ``top_n = N`` and no suppression:
segments clipped to the video, ties in score ranked by the lower candidate index), and hands the
ranked list (a :class:`QueryRanking`, seconds) to a protocol, which applies its own NMS and hit
test (the arithmetic lives in :mod:`fian_fast.metrics`). Each protocol below names the file it
reproduces and every rule it follows; every rule is pinned by a hand-made case in
``tests/test_evaluate.py`` (``tests/test_evaluate_mmn.py`` for mmn's float32) that fails under
the neighbouring rule. Hit counts are integers and exact; metrics are percentages rounded to two
decimals.

One batch loop (:func:`rank_queries`) runs the model; :func:`score_protocols` applies each
protocol with its NMS threshold; :meth:`EvalResult.add` is the one place a query's grade is
added up; :func:`evaluate_model` is the two together. Queries with several relevant windows
(QVHighlights) carry them with their batch (``Batch.gt_windows``, then
:attr:`QueryRanking.gt_windows`): ``moment_detr`` always grades every window by its own rule;
the other protocols grade the first window only, or with ``windows="each"`` (the ``--windows
each`` policy) each window: a hit at (n, m) when any window is hit there, the mIoU term of the
window the top-1 segment matches best. Ground truth and durations are graded as the annotation
gives them (the batch's float64 ``gt_seconds`` and ``duration_seconds``, not the float32 forms
the model reads), so each window is graded exactly as a one-window query of it.

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
    * Float32 throughout, as MMN computes: its moments are float32 tensors (``grids * duration /
      num_clips``; here the model's segments, float32 from ``frames / L * duration``), its ground
      truth a float32 tensor of the seconds, its IoU float32 tensor arithmetic, its NMS test
      ``iou > nms_threshold`` and its hit test ``iou >= m`` float32 comparisons (a Python
      threshold meets a float32 tensor as float32; MMN's ``iou_metrics`` is a float32 tensor).
      An IoU that is exactly a threshold in float64 may fall on either side of it in float32.
    * IoU in seconds, ``max(inter, 0) / hull`` (as 2dtan, in float32).
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

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .data.windows import WINDOW_POLICIES
from .metrics import (MOMENT_DETR_AP_THRESHOLDS, MOMENT_DETR_MAX_WINDOWS, average_precision_moment_detr,
                      frames_csmgan, gt_frames_csmgan, iou_frames_csmgan, iou_mmn, iou_seconds, nms_2dtan, nms_csmgan,
                      nms_mmn, r1_iou_moment_detr)
from .model.decode import clipped_offsets
from .reference.decode import refine_segments

__all__ = ["PROTOCOLS", "SUPPRESSING", "DEFAULT_PROTOCOL", "THRESHOLDS", "RECALLS", "MOMENT_DETR_AP_THRESHOLDS",
           "MOMENT_DETR_MAX_WINDOWS", "EvalResult", "Grade", "QueryRanking", "default_nms_threshold",
           "protocol_nms_threshold", "nms_2dtan", "nms_csmgan", "nms_mmn", "iou_seconds", "iou_mmn",
           "iou_frames_csmgan", "average_precision_moment_detr", "score_queries", "score_protocols",
           "ranked_segments", "rank_queries", "evaluate_model"]

PROTOCOLS = ("2dtan", "csmgan", "mmn", "moment_detr")
#: the protocols with one NMS threshold, set by ``nms_threshold`` / ``--nms-threshold``
SUPPRESSING = ("2dtan", "mmn")
DEFAULT_PROTOCOL = "2dtan"
RECALLS = (1, 5)
#: IoU thresholds m reported per dataset.
THRESHOLDS = {"charades": (0.5, 0.7), "activitynet": (0.3, 0.5, 0.7), "tacos": (0.1, 0.3, 0.5, 0.7),
              "synthetic": (0.3, 0.5, 0.7), "lighthouse": (0.3, 0.5, 0.7)}


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


def protocol_nms_threshold(protocol: str, nms_threshold: Optional[float] = None,
                           dataset: Optional[str] = None) -> Optional[float]:
    """The one rule of the NMS threshold a protocol runs with: ``nms_threshold`` for the
    protocols in :data:`SUPPRESSING` (None: their :func:`default_nms_threshold` for
    ``dataset``), None for the others."""
    if protocol not in SUPPRESSING:
        return default_nms_threshold(protocol, dataset)
    return float(nms_threshold) if nms_threshold is not None else default_nms_threshold(protocol, dataset)


@dataclass
class QueryRanking:
    """One query's ranked candidates: ``segments`` float64 [K, 2] seconds (best first), ``scores``
    [K], ``indices`` [K] candidate indices, the video's ``length`` in frames and ``duration`` in
    seconds, the ground truth ``gt`` (start, end) seconds, and optionally all its ground-truth
    windows ``gt_windows`` float64 [G, 2] seconds, the first being ``gt`` (QVHighlights has
    several: see the module docstring), the ``video_id`` and the ``query`` sentence."""

    segments: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    length: int
    duration: float
    gt: Tuple[float, float]
    gt_windows: Optional[np.ndarray] = None
    video_id: str = ""
    query: str = ""

    @property
    def windows(self) -> np.ndarray:
        """float64 [G, 2]: ``gt_windows``, or ``[gt]`` when there are none."""
        if self.gt_windows is None or len(self.gt_windows) == 0:
            return np.asarray([self.gt], dtype=np.float64)
        return np.asarray(self.gt_windows, dtype=np.float64).reshape(-1, 2)

    def ground_truths(self, windows: str = "first") -> List[Tuple[float, float]]:
        """The windows the recall protocols grade: ``[gt]``, and with ``windows="each"`` every
        further window of ``gt_windows``."""
        if windows == "first" or self.gt_windows is None or len(self.gt_windows) <= 1:
            return [self.gt]
        return [self.gt] + [(float(s), float(e)) for s, e in self.windows[1:]]


class Grade(NamedTuple):
    """One query's grade under one protocol: ``hits[(n, m)]`` whether it is hit among the top n at
    threshold m, its mIoU term ``iou``, and its AP per :data:`MOMENT_DETR_AP_THRESHOLDS` (None
    outside moment_detr, or for a query left out of the mAP)."""
    hits: Dict[Tuple[int, float], bool]
    iou: float = 0.0
    ap: Optional[np.ndarray] = None


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

    def add(self, grade: Grade) -> None:
        """Add one query's :class:`Grade`: the one place a result is added up."""
        self.num_queries += 1
        for key in self.hits:
            self.hits[key] += bool(grade.hits.get(key, False))
        self.miou_sum += grade.iou
        if grade.ap is not None:
            self.ap_queries += 1
            for t, v in zip(MOMENT_DETR_AP_THRESHOLDS, grade.ap):
                self.ap_sums[t] += float(v)

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


# ------------------------------------------------------------------------------ protocols
def _grade_windows(hits, gts, ranked_iou, top_iou, is_hit, thresholds, recalls) -> Grade:
    """Grade against every window of ``gts``: a hit at (n, m) when any window is hit there, the
    largest mIoU term. ``ranked_iou(g, m)``: the IoUs of the windows kept for threshold m against
    window g, best first; ``top_iou(g)``: the mIoU term against g (NaN counts 0);
    ``is_hit(ious, m)``: the protocol's hit test."""
    iou = 0.0
    for g in gts:
        iou = max(iou, float(np.nan_to_num(top_iou(g))))
        for m in thresholds:
            with np.errstate(invalid="ignore"):
                hit = is_hit(ranked_iou(g, m), m)
            for r in recalls:
                hits[(r, m)] = hits[(r, m)] or bool(hit[:r].any())
    return Grade(hits, iou)


def _grade(q: QueryRanking, protocol: str, thresholds, recalls, nms: float, windows: str) -> Grade:
    """One query's grade under ``protocol`` (the module docstring's rules)."""
    hits = {(r, m): False for m in thresholds for r in recalls}
    if len(q.segments) == 0:
        return Grade(hits)          # a miss with IoU 0; moment_detr leaves it out of the mAP
    gts, max_r = q.ground_truths(windows), max(recalls)
    if protocol == "2dtan":
        segs = np.asarray(q.segments)[nms_2dtan(q.segments, nms, max_r)]
        return _grade_windows(hits, gts, lambda g, m: iou_seconds(segs, g), lambda g: iou_seconds(segs[:1], g)[0],
                              lambda iou, m: iou > m, thresholds, recalls)
    if protocol == "mmn":
        keep = nms_mmn(q.segments, q.scores, nms)[:max_r]
        if not keep:
            return Grade(hits)      # only zero scores: no candidate
        segs = np.asarray(q.segments)[keep]
        return _grade_windows(hits, gts, lambda g, m: iou_mmn(segs, g), lambda g: iou_mmn(segs[:1], g)[0],
                              lambda iou, m: iou >= np.float32(m), thresholds, recalls)
    if protocol == "csmgan":
        pred = frames_csmgan(q.segments, q.length, q.duration)
        top = pred[nms_csmgan(pred, q.scores, q.indices, 1.0, 1)]
        picks = {m: pred[nms_csmgan(pred, q.scores, q.indices, m - 0.05, max_r)] for m in thresholds}
        frames = {g: gt_frames_csmgan(g, q.length, q.duration) for g in gts}
        return _grade_windows(hits, gts, lambda g, m: iou_frames_csmgan(picks[m], frames[g]),
                              lambda g: iou_frames_csmgan(top, frames[g])[0], lambda iou, m: iou >= m,
                              thresholds, recalls)
    iou = r1_iou_moment_detr(q.segments[0], q.windows)
    k = MOMENT_DETR_MAX_WINDOWS
    ap = average_precision_moment_detr(q.segments[:k], q.scores[:k], q.windows)
    return Grade({key: iou >= key[1] for key in hits}, iou, ap)


def score_queries(queries: Iterable[QueryRanking], protocol: str = DEFAULT_PROTOCOL,
                  thresholds: Sequence[float] = (0.3, 0.5, 0.7), recalls: Sequence[int] = RECALLS,
                  nms_threshold: Optional[float] = None, dataset: Optional[str] = None,
                  windows: str = "first") -> EvalResult:
    """R@n, IoU@m hit counts and mIoU (and mAP for moment_detr) of ranked predictions under
    ``protocol``. ``nms_threshold`` sets the NMS of 2dtan and mmn (None: their
    :func:`default_nms_threshold` for ``dataset``); moment_detr reports R@1 only, whatever
    ``recalls`` holds. ``windows`` (``first`` or ``each``): the ground-truth windows the recall
    protocols grade (the module docstring)."""
    fn = "score_queries"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{fn}: protocol should be one of {PROTOCOLS}, got {protocol!r}")
    if windows not in WINDOW_POLICIES:
        raise ValueError(f"{fn}: windows should be one of {WINDOW_POLICIES}, got {windows!r}")
    if nms_threshold is not None:
        if protocol not in SUPPRESSING:
            raise ValueError(f"{fn}: nms_threshold applies to the protocols {SUPPRESSING}, got it for {protocol!r}")
        if isinstance(nms_threshold, bool) or not isinstance(nms_threshold, (int, float)) or \
                not 0.0 <= nms_threshold <= 1.0:
            raise ValueError(f"{fn}: nms_threshold should be in [0, 1], got {nms_threshold!r}")
    nms = protocol_nms_threshold(protocol, nms_threshold, dataset)
    if protocol == "moment_detr":
        recalls = (1,)
    result = EvalResult(protocol, 0, {(r, m): 0 for m in thresholds for r in recalls}, nms_threshold=nms)
    if protocol == "moment_detr":
        result.ap_sums = {t: 0.0 for t in MOMENT_DETR_AP_THRESHOLDS}
    for q in queries:
        result.add(_grade(q, protocol, thresholds, recalls, nms or 0.0, windows))
    return result


def score_protocols(rankings: Sequence[QueryRanking], protocols: Sequence[str] = (DEFAULT_PROTOCOL,),
                    thresholds: Sequence[float] = (0.3, 0.5, 0.7), nms_threshold: Optional[float] = None,
                    dataset: Optional[str] = None, windows: str = "first") -> Dict[str, EvalResult]:
    """``{protocol: EvalResult}`` of the same rankings under each protocol. ``nms_threshold`` sets
    the NMS of the protocols in :data:`SUPPRESSING` (the others ignore it), by
    :func:`protocol_nms_threshold`; ``windows`` as in :func:`score_queries`."""
    return {p: score_queries(rankings, p, thresholds, nms_threshold=nms_threshold if p in SUPPRESSING else None,
                             dataset=dataset, windows=windows)
            for p in protocols}


# ------------------------------------------------------------------------------ the model
def ranked_segments(out, durations: torch.Tensor, gt_fraction: torch.Tensor,
                    gt_windows: Optional[Sequence[Optional[np.ndarray]]] = None,
                    video_ids: Optional[Sequence[str]] = None,
                    sentences: Optional[Sequence[str]] = None,
                    gt_seconds: Optional[np.ndarray] = None,
                    duration_seconds: Optional[np.ndarray] = None) -> List[QueryRanking]:
    """Every valid candidate of each query, refined and ranked as ``model.decode`` does with
    ``top_n = N`` and no suppression (``nms_threshold = 1``), vectorized: offsets are taken relative
    to the window clipped to the video (:func:`~fian_fast.model.decode.clipped_offsets`, as the
    model's decode), ``window + offsets`` is re-ordered and clipped to ``[0, video_lengths[b]]``,
    candidates are ranked by logit (ties: lower index), frames become seconds by
    ``frames / video_lengths[b] * durations[b]``. ``tests/test_evaluate.py`` holds this equal to
    ``model.decode``. ``gt_windows`` (optional, per query a float [G, 2] array of every
    ground-truth window in seconds, or None), ``video_ids`` and ``sentences`` become the
    rankings' ``gt_windows``, ``video_id`` and ``query``. ``gt_seconds`` float64 [B, 2] and
    ``duration_seconds`` float64 [B] (optional: the annotation's values, graded as given) become
    their ``gt`` and ``duration``; without them ``gt = gt_fraction * durations``."""
    with torch.no_grad():
        lengths = out.video_lengths
        cand, offsets = clipped_offsets(out.candidates, out.offsets, lengths)
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
    B = len(counts)
    windows = list(gt_windows) if gt_windows is not None else [None] * B
    vids = list(video_ids) if video_ids is not None else [""] * B
    texts = list(sentences) if sentences is not None else [""] * B
    if duration_seconds is not None:
        durs = [float(d) for d in duration_seconds]
    if gt_seconds is not None:
        truths = [(float(s), float(e)) for s, e in gt_seconds]
    else:
        truths = [(float(gts[b, 0]) * durs[b], float(gts[b, 1]) * durs[b]) for b in range(len(counts))]
    return [QueryRanking(seconds[b, :k].astype(np.float64), scores[b, :k], order[b, :k], int(lens[b]), durs[b],
                         truths[b],
                         None if windows[b] is None else np.asarray(windows[b], dtype=np.float64).reshape(-1, 2),
                         vids[b], texts[b])
            for b, k in enumerate(counts)]


@torch.no_grad()
def rank_queries(model, loader, device="cpu", autocast: bool = False, progress: bool = False) -> List[QueryRanking]:
    """The one batch loop: run ``model`` over ``loader`` (yielding :class:`~fian_fast.data.Batch`
    made by ``collate``, which checked their values: the model takes the trusted path) and rank
    each query's candidates (:func:`ranked_segments`), carrying each batch's ground-truth
    windows, video ids and sentences. The model is put in eval mode and restored afterwards;
    ``progress`` shows a progress bar."""
    was_training = model.training
    model.eval()
    rankings: List[QueryRanking] = []
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            batch = batch.to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                out = model(*batch.model_inputs(), validate=False)   # checked by the loader's collate
            rankings.extend(ranked_segments(out, batch.durations.float(), batch.gt, batch.gt_windows,
                                            batch.video_ids, batch.sentences, batch.gt_seconds,
                                            batch.duration_seconds))
    finally:
        model.train(was_training)
    return rankings


def evaluate_model(model, loader, protocols: Sequence[str] = (DEFAULT_PROTOCOL,),
                   thresholds: Sequence[float] = (0.3, 0.5, 0.7), device="cpu", autocast: bool = False,
                   progress: bool = False, nms_threshold: Optional[float] = None,
                   dataset: Optional[str] = None, windows: str = "first") -> Dict[str, EvalResult]:
    """Run ``model`` over ``loader`` (:func:`rank_queries`) and score it under each protocol
    (:func:`score_protocols`).

    ``nms_threshold`` sets the NMS of the protocols in :data:`SUPPRESSING` (the others ignore
    it); None takes each one's :func:`default_nms_threshold` for ``dataset``. A query whose batch
    carries several ground-truth windows (``Batch.gt_windows``, seconds: a split loaded with
    ``windows="each"``) is graded against all of them by ``moment_detr``, and by the other
    protocols with ``windows="each"`` (a hit when any window is hit; ``"first"``: its first
    window)."""
    rankings = rank_queries(model, loader, device, autocast, progress)
    return score_protocols(rankings, protocols, thresholds, nms_threshold, dataset, windows)
