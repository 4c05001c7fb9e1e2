"""Evaluation: R@n, IoU@m and mIoU under the field's named protocols (PROTOCOLS.md, "Metrics").

The evaluator ranks, for each query, every valid candidate of the model by score, with the
model's own refinement (what ``FIAN.decode`` returns with ``top_n = N`` and no suppression), and hands the
ranked list to a protocol, which applies its own NMS and hit test:

``2dtan`` (default)
    IoU in seconds, ``inter / union``; a hit is ``IoU > m`` (strict); one NMS over the ranked list
    at overlap 0.5 (a segment is dropped when its IoU with a kept one is ``> 0.5``), stopping
    after 5 kept; R@n looks at the first n kept; mIoU is the mean IoU of the top-1 segment.
``csmgan`` (the protocol of FIAN's group; probably the paper's)
    IoU on frame indices of the fixed-length sequence, ``(inter + 1) / (union + 1)`` with
    inclusive ends; a hit is ``IoU >= m``; a separate NMS per threshold m at overlap ``m - 0.05``
    (plain ``inter / (len_i + len_j - inter)`` on the same frame values, dropped when ``>``),
    ranked by score with ties taken by the higher candidate index first (a stable ascending sort
    popped from its end); mIoU is the mean frame IoU of the top-1 segment. Frame indices: the
    ground truth ``(s, e)`` seconds of a video of ``L`` frames becomes
    ``[floor(s / duration * L), ceil(e / duration * L) - 1]``; a predicted window ``[a, b)``
    (frames) becomes ``[a, b - 1]`` clipped to ``[0, L - 1]`` (values stay fractional).

``2dtan`` is the default because it is the stricter and more widely reproduced of the two.
Every report names its protocol. Hit counts are integers and exact; metrics are percentages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["PROTOCOLS", "DEFAULT_PROTOCOL", "THRESHOLDS", "RECALLS", "EvalResult", "QueryRanking", "nms_2dtan", "nms_csmgan",
           "iou_seconds", "iou_frames_csmgan", "score_queries", "ranked_segments", "evaluate_model"]

PROTOCOLS = ("2dtan", "csmgan")
DEFAULT_PROTOCOL = "2dtan"
RECALLS = (1, 5)
#: IoU thresholds m reported per dataset.
THRESHOLDS = {"charades": (0.5, 0.7), "activitynet": (0.3, 0.5, 0.7), "tacos": (0.1, 0.3, 0.5, 0.7),
              "synthetic": (0.3, 0.5, 0.7), "lighthouse": (0.3, 0.5, 0.7)}


@dataclass
class QueryRanking:
    """One query's ranked candidates: ``segments`` float64 [K, 2] seconds (best first), ``scores``
    [K], ``indices`` [K] candidate indices, the video's ``length`` in frames and ``duration`` in
    seconds, and the ground truth ``gt`` (start, end) seconds."""

    segments: np.ndarray
    scores: np.ndarray
    indices: np.ndarray
    length: int
    duration: float
    gt: Tuple[float, float]


@dataclass
class EvalResult:
    """``hits[(n, m)]`` queries with a hit among the top n at threshold m; ``metrics`` in percent
    (``"R1@0.5"``, ``"R5@0.5"``, ..., ``"mIoU"``)."""

    protocol: str
    num_queries: int
    hits: Dict[Tuple[int, float], int] = field(default_factory=dict)
    miou_sum: float = 0.0

    @property
    def metrics(self) -> Dict[str, float]:
        out = {}
        n = max(self.num_queries, 1)
        for (r, m), h in sorted(self.hits.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            out[f"R{r}@{m:g}"] = round(100.0 * h / n, 2)
        out["mIoU"] = round(100.0 * self.miou_sum / n, 2)
        return out

    def to_json(self) -> dict:
        return {"protocol": self.protocol, "num_queries": self.num_queries, "metrics": self.metrics}

    def summary(self) -> str:
        return f"[{self.protocol}] {self.num_queries} queries: " + "  ".join(f"{k} {v:.2f}" for k, v in self.metrics.items())


# ----------------------------------------------------------------------------- IoU and NMS
def iou_seconds(segments: np.ndarray, gt: Sequence[float]) -> np.ndarray:
    """2D-TAN IoU of ``segments`` [K, 2] with one ``gt`` (start, end): ``inter / hull``
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


# ------------------------------------------------------------------------------ protocols
def _frames_csmgan(q: QueryRanking) -> Tuple[np.ndarray, Tuple[float, float]]:
    L = q.length
    frames = np.asarray(q.segments, dtype=np.float64) / q.duration * L
    pred = np.stack([np.clip(frames[:, 0], 0, L - 1), np.clip(frames[:, 1] - 1, 0, L - 1)], axis=1)
    pred[:, 1] = np.maximum(pred[:, 1], pred[:, 0])
    gs = max(0, math.floor(q.gt[0] / q.duration * L))
    ge = min(L - 1, max(gs, math.ceil(q.gt[1] / q.duration * L) - 1))
    return pred, (float(gs), float(ge))


def score_queries(queries: Iterable[QueryRanking], protocol: str = DEFAULT_PROTOCOL,
                  thresholds: Sequence[float] = (0.3, 0.5, 0.7), recalls: Sequence[int] = RECALLS) -> EvalResult:
    """R@n, IoU@m hit counts and mIoU of ranked predictions under ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"score_queries: protocol should be one of {PROTOCOLS}, got {protocol!r}")
    result = EvalResult(protocol, 0, {(r, m): 0 for m in thresholds for r in recalls})
    max_r = max(recalls)
    for q in queries:
        result.num_queries += 1
        if len(q.segments) == 0:
            continue
        if protocol == "2dtan":
            keep = nms_2dtan(q.segments, 0.5, max_r)
            iou = iou_seconds(np.asarray(q.segments)[keep], q.gt)
            result.miou_sum += float(np.nan_to_num(iou[0]))
            for m in thresholds:
                hit = iou > m
                for r in recalls:
                    result.hits[(r, m)] += bool(hit[:r].any())
        else:
            pred, gt = _frames_csmgan(q)
            top = nms_csmgan(pred, q.scores, q.indices, 1.0, 1)
            result.miou_sum += float(iou_frames_csmgan(pred[top], gt)[0])
            for m in thresholds:
                picks = nms_csmgan(pred, q.scores, q.indices, m - 0.05, max_r)
                hit = iou_frames_csmgan(pred[picks], gt) >= m
                for r in recalls:
                    result.hits[(r, m)] += bool(hit[:r].any())
    return result


# ------------------------------------------------------------------------------ the model
def ranked_segments(model, out, durations: torch.Tensor, gt_fraction: torch.Tensor) -> List[QueryRanking]:
    """Every valid candidate of each query, refined and ranked as ``model.decode`` does with
    ``top_n = N`` and no suppression (``nms_threshold = 1``), vectorized: offsets are taken relative
    to the window clipped to the video, ``window + offsets`` is re-ordered and clipped to
    ``[0, video_lengths[b]]``, candidates are ranked by logit (ties: lower index), frames become
    seconds by ``frames / video_lengths[b] * durations[b]``. ``tests/test_evaluate.py`` holds this
    equal to ``model.decode``."""
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
    return [QueryRanking(seconds[b, :k].astype(np.float64), scores[b, :k], order[b, :k], int(lens[b]), durs[b],
                         (float(gts[b, 0]) * durs[b], float(gts[b, 1]) * durs[b]))
            for b, k in enumerate(counts)]


@torch.no_grad()
def evaluate_model(model, loader, protocols: Sequence[str] = (DEFAULT_PROTOCOL,),
                   thresholds: Sequence[float] = (0.3, 0.5, 0.7), device="cpu", autocast: bool = False,
                   progress: bool = False) -> Dict[str, EvalResult]:
    """Run ``model`` over ``loader`` (yielding :class:`~fian_fast.data.Batch`) and score it under
    each protocol. The model is put in eval mode and restored afterwards."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    rankings: List[QueryRanking] = []
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            batch = batch.to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                out = model(*batch.model_inputs())
            out = out._replace(logits=out.logits.float(), offsets=out.offsets.float())
            rankings.extend(ranked_segments(model, out, batch.durations.float(), batch.gt))
    finally:
        model.train(was_training)
    return {p: score_queries(rankings, p, thresholds) for p in protocols}
