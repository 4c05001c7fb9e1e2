"""``fian_fast.ops.temporal_nms``: batched greedy temporal NMS (section 3.5, inference)."""
from __future__ import annotations

from typing import Optional

import torch

from .._extension import load_ops, register_fake
from .._validation import check_data, check_fraction, check_same_device, check_tensor, check_top, check_valid

__all__ = ["temporal_nms"]


def temporal_nms(segments: torch.Tensor, scores: torch.Tensor, iou_threshold: float, top_k: int,
                 valid: Optional[torch.Tensor] = None, *, validate: bool = True) -> torch.Tensor:
    """Greedy temporal NMS, sample by sample.

    Candidates are visited by descending score (equal scores: lower index first); one is kept
    unless its IoU with an already kept one is strictly greater than ``iou_threshold``.

    Args:
        segments: Tensor[B, N, 2], floating, ``[start, end)`` in any one unit (IoU is unit-free).
        scores: Tensor[B, N], dtype of ``segments``, no NaN (infinities rank normally).
        iou_threshold: in [0, 1].
        top_k: >= 1, the width of the output.
        valid: optional bool Tensor[B, N]; invalid candidates are never kept. ``None`` = all valid.
        validate: check the values (no NaN, start <= end; one host read). ``False`` for callers
            whose data was checked where it entered: then only metadata is checked.
    Returns:
        Tensor[B, top_k], int64, kept indices into N in rank order, padded with -1. Identical on
        CPU and CUDA (one block per sample there, no host synchronization in the kernel).
    """
    fn = "temporal_nms"
    check_tensor(fn, "segments", segments, dim=3, last=2, floating=True)
    B, N = segments.shape[0], segments.shape[1]
    check_tensor(fn, "scores", scores, dim=2, shape=(B, N), floating=True)
    if scores.dtype != segments.dtype:
        raise ValueError(f"{fn}: scores should have the dtype of segments ({segments.dtype}), got {scores.dtype}")
    iou_threshold = check_fraction(fn, "iou_threshold", iou_threshold)
    top_k = check_top(fn, "top_k", top_k)
    check_valid(fn, valid, B, N)
    check_same_device(fn, segments=segments, scores=scores, valid=valid)
    if validate:
        check_data(fn, intervals=(("segments", segments),), no_nan=(("scores", scores),))
    if B == 0:
        return torch.empty((0, top_k), dtype=torch.int64, device=segments.device)
    load_ops()
    return torch.ops.fian_fast.temporal_nms(segments, scores, iou_threshold, top_k, valid)


@register_fake("fian_fast::temporal_nms")
def _temporal_nms_fake(segments, scores, iou_threshold, top_k, valid=None):
    return segments.new_empty((segments.shape[0], top_k), dtype=torch.int64)
