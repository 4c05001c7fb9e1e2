"""Lazy lookup of the fused ops.

The lookup happens at call time and returns ``None`` when ``fian_fast.ops.<name>`` needs the
compiled extension (every op but the Triton ``cga``) and that is not built for the tensors'
device, or (``cga``) when the tensors are not on CUDA, so the caller falls back to its
pure-PyTorch twin in :mod:`fian_fast.reference`.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .._extension import has_cuda_ops, has_ops

__all__ = ["fast_op"]

#: ops that run without fian_fast._C: Triton, used on CUDA only (on the CPU the reference is the op)
_TRITON_OPS = ("cga",)


def _lookup(name: str) -> Callable:
    from .. import ops

    return getattr(ops, name)


def fast_op(name: str, device: torch.device) -> Optional[Callable]:
    """``fian_fast.ops.<name>`` when it exists and can run on ``device``, else None."""
    fn = _lookup(name)
    if name in _TRITON_OPS:
        return fn if device.type == "cuda" else None
    if device.type == "cuda":
        return fn if has_cuda_ops() else None
    return fn if has_ops() else None
