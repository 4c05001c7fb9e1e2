"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` naming the function, the argument, what was expected and what
was received.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch

__all__ = ["check_tensor", "check_lengths", "check_finite", "check_same_device", "check_fraction",
           "check_intervals", "check_no_nan", "check_data"]


def check_tensor(fn: str, name: str, t, dim: Optional[int] = None, last: Optional[int] = None,
                 floating: Optional[bool] = None, shape: Optional[Sequence[Optional[int]]] = None) -> torch.Tensor:
    """Check that ``t`` is a tensor of rank ``dim`` whose last size is ``last`` and whose sizes
    match ``shape`` (``None`` entries are free)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{fn}: {name} should be a torch.Tensor, got {type(t).__name__}")
    if dim is not None and t.dim() != dim:
        raise ValueError(f"{fn}: {name} should be a {dim}-D tensor, got {t.dim()}-D with shape {tuple(t.shape)}")
    if last is not None and (t.dim() == 0 or t.shape[-1] != last):
        raise ValueError(f"{fn}: {name} should have last dimension {last}, got shape {tuple(t.shape)}")
    if shape is not None:
        for axis, want in enumerate(shape):
            if want is not None and t.shape[axis] != want:
                raise ValueError(f"{fn}: {name} should have size {want} at dim {axis}, got shape {tuple(t.shape)}")
    if floating is True and not t.is_floating_point():
        raise ValueError(f"{fn}: {name} should be a floating tensor, got {t.dtype}")
    if floating is False and (t.is_floating_point() or t.is_complex()):
        raise ValueError(f"{fn}: {name} should be an integer tensor, got {t.dtype}")
    return t


def check_lengths(fn: str, name: str, lengths, batch: int, max_len: int, min_len: int = 1) -> torch.Tensor:
    """``lengths`` is an integer tensor [batch] with values in [min_len, max_len]."""
    check_tensor(fn, name, lengths, dim=1, floating=False, shape=(batch,))
    if lengths.numel():
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < min_len or hi > max_len:
            raise ValueError(f"{fn}: {name} should lie in [{min_len}, {max_len}], got values in [{lo}, {hi}]")
    return lengths


def check_finite(fn: str, name: str, t: torch.Tensor) -> torch.Tensor:
    """No NaN or infinity in ``t`` (a sync on CUDA: call it once at an entry point)."""
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{fn}: {name} should be finite, got {bad} NaN or infinite values")
    return t


def check_same_device(fn: str, **tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor)}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"{fn}: tensors should be on one device, got {listing}")


def check_fraction(fn: str, name: str, value: float) -> float:
    """``value`` is a float in [0, 1]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{fn}: {name} should be in [0, 1], got {value!r}")
    return float(value)


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
