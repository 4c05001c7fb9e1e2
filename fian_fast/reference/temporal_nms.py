"""Pure-PyTorch oracle of :func:`fian_fast.ops.temporal_nms` (section 3.5, inference: greedy
non-maximum suppression of ranked candidate moments)."""
from __future__ import annotations

from typing import Optional

import torch

from .iou_label import interval_iou

__all__ = ["temporal_nms", "nms_one"]


def nms_one(segments: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, iou_threshold: float,
            top_k: int) -> torch.Tensor:
    """Greedy NMS of one sample.

    Args:
        segments: Tensor[N, 2], float32/float64, ``[start, end)``.
        scores: Tensor[N], floating, no NaN; higher ranks first, equal scores by lower index.
        valid: bool Tensor[N]; invalid candidates are never kept.
        iou_threshold: a later candidate is suppressed when its IoU with a kept one is
            strictly greater than this.
        top_k: at most this many indices are returned.
    Returns:
        Tensor[top_k], int64, kept indices in rank order, padded with -1.
    """
    out = torch.full((top_k,), -1, dtype=torch.int64)
    order = torch.sort(scores, descending=True, stable=True).indices
    order = order[valid[order]]
    s, e = segments[:, 0], segments[:, 1]
    alive = torch.ones(segments.shape[0], dtype=torch.bool)
    count = 0
    for i in order.tolist():
        if not alive[i]:
            continue
        out[count] = i
        count += 1
        if count == top_k:
            break
        alive &= ~(interval_iou(s[i], e[i], s, e) > iou_threshold)
    return out


def temporal_nms(segments: torch.Tensor, scores: torch.Tensor, iou_threshold: float, top_k: int,
                 valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Greedy temporal NMS, sample by sample.

    Args:
        segments: Tensor[B, N, 2], floating, ``[start, end)`` in any one unit (IoU is unit-free).
        scores: Tensor[B, N], floating, no NaN.
        iou_threshold: in [0, 1]; suppress when IoU > threshold (strict).
        top_k: >= 1, the width of the output.
        valid: optional bool Tensor[B, N]; ``None`` = every candidate valid.
    Returns:
        Tensor[B, top_k], int64, indices into N in rank order, -1 padding.
    """
    acc = torch.float64 if segments.dtype == torch.float64 else torch.float32
    seg = segments.to(acc)
    B, N = scores.shape
    if valid is None:
        valid = torch.ones(B, N, dtype=torch.bool, device=scores.device)
    rows = [nms_one(seg[b].cpu(), scores[b].cpu(), valid[b].cpu(), iou_threshold, top_k) for b in range(B)]
    if not rows:
        return torch.empty(0, top_k, dtype=torch.int64, device=scores.device)
    return torch.stack(rows).to(scores.device)
