"""``fian_fast.ops.iou_label``: IoU of every candidate with the ground truth, the positive flag
``o_j > τ`` and the offset targets of eq. 17 (section 3.5), in one kernel."""
from __future__ import annotations

import torch

from .._extension import load_ops, register_fake
from .._validation import check_data, check_fraction, check_same_device, check_tensor

__all__ = ["iou_label"]


def iou_label(candidates: torch.Tensor, gt: torch.Tensor, tau: float, *, validate: bool = True):
    """IoU labels and regression targets of candidate windows (eq. 15-17).

    Args:
        candidates: Tensor[B, N, 2] or Tensor[N, 2] (shared by the batch), floating
            (float16/bfloat16/float32/float64), ``[start, end)`` in any unit (frames in the model).
        gt: Tensor[B, 2], floating, ground truth ``(s, e)`` in the unit of ``candidates``.
        tau: positive threshold τ in [0, 1] (0.55 in the paper).
        validate: check the values (no NaN, start <= end; one host read). ``False`` for callers
            whose data was checked where it entered (the model's loss): then only metadata.
    Returns:
        ``(iou, positive, offset_targets)``: iou Tensor[B, N] (``o_j``), positive bool Tensor[B, N]
        (``o_j > τ``, decided in float32/float64 before any cast), offset_targets Tensor[B, N, 2]
        ``(s - ŝ_j, e - ê_j)`` in the input unit. Floats take the promoted dtype of the inputs and
        are computed in float32 (float64 for float64).
    """
    fn = "iou_label"
    check_tensor(fn, "candidates", candidates, last=2, floating=True)
    if candidates.dim() not in (2, 3):
        raise ValueError(f"{fn}: candidates should be [B, N, 2] or [N, 2], got shape {tuple(candidates.shape)}")
    check_tensor(fn, "gt", gt, dim=2, last=2, floating=True)
    if candidates.dim() == 3 and candidates.shape[0] != gt.shape[0]:
        raise ValueError(f"{fn}: candidates and gt should have one batch size, got {candidates.shape[0]} "
                         f"and {gt.shape[0]}")
    tau = check_fraction(fn, "tau", tau)
    check_same_device(fn, candidates=candidates, gt=gt)
    if validate:
        check_data(fn, intervals=(("candidates", candidates), ("gt", gt)))
    dtype = torch.promote_types(candidates.dtype, gt.dtype)
    B, N = gt.shape[0], candidates.shape[-2]
    if B * N == 0:
        return (gt.new_empty((B, N), dtype=dtype), torch.empty((B, N), dtype=torch.bool, device=gt.device),
                gt.new_empty((B, N, 2), dtype=dtype))
    load_ops()
    if candidates.dtype != dtype:
        candidates = candidates.to(dtype)
    if gt.dtype != dtype:
        gt = gt.to(dtype)
    return torch.ops.fian_fast.iou_label(candidates, gt, tau)


@register_fake("fian_fast::iou_label")
def _iou_label_fake(candidates, gt, tau):
    B, N = gt.shape[0], candidates.shape[-2]
    return gt.new_empty((B, N)), gt.new_empty((B, N), dtype=torch.bool), gt.new_empty((B, N, 2))
