"""``fian_fast.ops.iou_label``: IoU of every candidate with the ground truth, the positive flag
``o_j > τ`` and the offset targets of eq. 17 (section 3.5), in one kernel."""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import torch

from .._extension import has_ops, load_ops, register_fake
from .._validation import check_fraction, check_same_device, check_tensor

__all__ = ["iou_label", "check_data", "check_intervals", "check_no_nan", "ensure_ops", "register_fake_op"]


def ensure_ops() -> None:
    """``load_ops()`` (raises with the build command when fian_fast._C is missing); skipped while
    torch.compile traces, which cannot enter its lock and only runs after an eager import."""
    if not torch.compiler.is_compiling():
        load_ops()


def register_fake_op(name: str):
    """``register_fake`` of ``fian_fast::<name>``, skipped when the loaded extension predates the
    op (a stale build must not break ``import fian_fast``; calling the op then fails clearly)."""
    if has_ops() and hasattr(torch.ops.fian_fast, name):
        return register_fake(f"fian_fast::{name}")
    return lambda fn: fn


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def check_intervals(fn: str, name: str, t: torch.Tensor) -> None:
    """Exact data checks of a [..., 2] tensor of intervals: no NaN and no start > end."""
    if _compiling() or t.numel() == 0:
        return
    check_no_nan(fn, name, t)
    start, end = t[..., 0], t[..., 1]
    if bool((start > end).any()):
        first = tuple(int(i) for i in torch.nonzero(start > end)[0])
        raise ValueError(f"{fn}: {name} should have start <= end, got start > end at index {first}: "
                         f"{t[first].tolist()}")


def check_no_nan(fn: str, name: str, t: torch.Tensor) -> None:
    """Exact check that ``t`` holds no NaN (infinities are allowed: they still order)."""
    if _compiling() or t.numel() == 0:
        return
    if bool(torch.isnan(t).any()):
        raise ValueError(f"{fn}: {name} should hold no NaN, got {int(torch.isnan(t).sum())} NaN values")


def check_data(fn: str, intervals: Sequence[Tuple[str, torch.Tensor]] = (),
               no_nan: Sequence[Tuple[str, torch.Tensor]] = (),
               extra: Sequence[Tuple[torch.Tensor, Callable[[], str]]] = ()) -> None:
    """Value checks of an entry point with a single host synchronization when they pass.

    ``intervals``: (name, [..., 2] tensor) pairs, no NaN and start <= end; ``no_nan``: (name,
    tensor) pairs; ``extra``: (0-d bool "bad" flag, message) pairs. Every flag is reduced on the
    tensors' device and read once; only when one is raised do the exact checks run to name the
    culprit. A NaN makes a sum NaN, and a sum is far cheaper than ``isnan().any()``; a NaN sum
    without a NaN (+inf and -inf together) passes the exact check. Skipped while torch.compile
    traces (there is no data then).
    """
    if _compiling():
        return
    flags = []
    for _, t in (*intervals, *no_nan):
        if t.numel():
            flags.append(torch.isnan(t.sum()).reshape(1))
    for _, t in intervals:
        if t.numel():
            flags.append((t[..., 0] > t[..., 1]).any().reshape(1))
    flags += [flag.reshape(1) for flag, _ in extra]
    if not flags or not bool(torch.cat(flags).any()):
        return
    for name, t in intervals:
        check_intervals(fn, name, t)
    for name, t in no_nan:
        check_no_nan(fn, name, t)
    for flag, message in extra:
        if bool(flag):
            raise ValueError(f"{fn}: {message()}")


def iou_label(candidates: torch.Tensor, gt: torch.Tensor, tau: float):
    """IoU labels and regression targets of candidate windows (eq. 15-17).

    Args:
        candidates: Tensor[B, N, 2] or Tensor[N, 2] (shared by the batch), floating
            (float16/bfloat16/float32/float64), ``[start, end)`` in any unit (frames in the model).
        gt: Tensor[B, 2], floating, ground truth ``(s, e)`` in the unit of ``candidates``.
        tau: positive threshold τ in [0, 1] (0.55 in the paper).
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
    check_data(fn, intervals=(("candidates", candidates), ("gt", gt)))
    dtype = torch.promote_types(candidates.dtype, gt.dtype)
    B, N = gt.shape[0], candidates.shape[-2]
    if B * N == 0:
        return (gt.new_empty((B, N), dtype=dtype), torch.empty((B, N), dtype=torch.bool, device=gt.device),
                gt.new_empty((B, N, 2), dtype=dtype))
    ensure_ops()
    return torch.ops.fian_fast.iou_label(candidates.to(dtype), gt.to(dtype), tau)


@register_fake_op("iou_label")
def _iou_label_fake(candidates, gt, tau):
    B, N = gt.shape[0], candidates.shape[-2]
    return gt.new_empty((B, N)), gt.new_empty((B, N), dtype=torch.bool), gt.new_empty((B, N, 2))
