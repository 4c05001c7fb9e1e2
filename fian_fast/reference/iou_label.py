"""Pure-PyTorch oracle of :func:`fian_fast.ops.iou_label` (section 3.5: IoU ``o_j`` of every
candidate with the ground truth, positives ``o_j > τ``, offset targets of eq. 17)."""
from __future__ import annotations

import torch

__all__ = ["iou_label", "interval_iou"]


def interval_iou(s1: torch.Tensor, e1: torch.Tensor, s2: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """Elementwise 1-D IoU with the operation order of ``csrc/ops/common/interval.h`` (so that
    float results are bit-identical to the compiled kernels); 0 when the union is empty."""
    inter = (torch.minimum(e1, e2) - torch.maximum(s1, s2)).clamp(min=0)
    union = (e1 - s1) + (e2 - s2) - inter
    safe = torch.where(union > 0, union, torch.ones_like(union))
    return torch.where(union > 0, inter / safe, torch.zeros_like(union))


def _acc_dtype(*dtypes: torch.dtype) -> torch.dtype:
    return torch.float64 if torch.float64 in dtypes else torch.float32


def iou_label(candidates: torch.Tensor, gt: torch.Tensor, tau: float):
    """IoU labels and regression targets of candidate windows.

    Args:
        candidates: Tensor[B, N, 2] or Tensor[N, 2] (shared by the batch), floating,
            ``[start, end)`` in any unit (frames in the model).
        gt: Tensor[B, 2], floating, ground-truth ``(s, e)`` in the unit of ``candidates``.
        tau: positive threshold τ in [0, 1] (0.55 in the paper).
    Returns:
        ``(iou, positive, offset_targets)``: iou Tensor[B, N] (``o_j``), positive bool Tensor[B, N]
        (``o_j > τ``, decided in float32/float64 before any cast), offset_targets Tensor[B, N, 2]
        ``(s - ŝ_j, e - ê_j)`` (eq. 17). Floating outputs take the promoted dtype of the inputs.
    """
    out_dtype = torch.promote_types(candidates.dtype, gt.dtype)
    acc = _acc_dtype(candidates.dtype, gt.dtype)
    cand = candidates.to(acc)
    if cand.dim() == 2:
        cand = cand.unsqueeze(0).expand(gt.shape[0], -1, -1)
    g = gt.to(acc)
    cs, ce = cand[..., 0], cand[..., 1]                       # [B, N]
    gs, ge = g[:, 0:1], g[:, 1:2]                             # [B, 1]
    iou = interval_iou(cs, ce, gs, ge)
    positive = iou > tau
    offsets = torch.stack([gs - cs, ge - ce], dim=-1)
    return iou.to(out_dtype), positive, offsets.to(out_dtype)
