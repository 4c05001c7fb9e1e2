"""Lazy lookup of the fused ops.

The model runs before (or without) the fused operators: the lookup happens at the first call
and returns ``None`` when ``fian_fast.ops.<name>`` does not exist, or when it needs the compiled
extension (every op but the Triton ``cga``) and that is not built for the tensors' device, so the
caller falls back to its pure-PyTorch twin in :mod:`fian_fast.reference`.
"""
from __future__ import annotations

import functools
import importlib
from typing import Callable, Optional

import torch

from .._extension import has_cuda_ops, has_ops

__all__ = ["fast_op"]

#: ops that run without fian_fast._C: Triton, used on CUDA only (on the CPU the reference is the op)
_TRITON_OPS = ("cga",)


@functools.lru_cache(maxsize=None)
def _lookup(name: str) -> Optional[Callable]:
    pkg = importlib.import_module("fian_fast.ops")
    fn = getattr(pkg, name, None)
    if callable(fn):
        return fn
    try:  # a module ``fian_fast.ops.<name>`` not (yet) exported by the package
        module = importlib.import_module(f"fian_fast.ops.{name}")
    except ImportError:
        return None
    fn = getattr(module, name, None)
    return fn if callable(fn) else None


def fast_op(name: str, device: torch.device) -> Optional[Callable]:
    """``fian_fast.ops.<name>`` when it exists and can run on ``device``, else None."""
    fn = _lookup(name)
    if fn is None:
        return None
    if name in _TRITON_OPS:
        return fn if device.type == "cuda" else None
    if device.type == "cuda":
        return fn if has_cuda_ops() else None
    return fn if has_ops() else None
