"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` naming the function, the argument, what was expected and what
was received.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

__all__ = ["check_tensor", "check_lengths", "check_finite", "check_same_device", "check_fraction"]


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
