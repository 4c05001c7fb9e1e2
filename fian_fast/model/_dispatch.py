"""Lazy lookup of the fused ops.

The lookup happens at call time and returns ``None`` when ``fian_fast.ops.<name>`` needs the
compiled extension and that is not built for the tensors' device, so the caller falls back to
its pure-PyTorch twin in :mod:`fian_fast.reference`. ``cga`` and ``relu_dropout`` need no
extension and are always returned: ``cga`` chooses between its fused Triton path, its ATen path
(CPU) and the reference itself, by the one rule of :func:`fian_fast._cga.cga_path`
(``FIAN_FAST_CGA``); ``relu_dropout`` is ATen ops with a leaner backward.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .._extension import has_cuda_ops, has_ops

__all__ = ["fast_op"]

#: ops that run without fian_fast._C on every device
_SELF_DISPATCHING_OPS = ("cga", "relu_dropout")


def _lookup(name: str) -> Callable:
    from .. import ops

    return getattr(ops, name)


def fast_op(name: str, device: torch.device) -> Optional[Callable]:
    """``fian_fast.ops.<name>`` when it exists and can run on ``device``, else None."""
    fn = _lookup(name)
    if name in _SELF_DISPATCHING_OPS:
        return fn
    if device.type == "cuda":
        return fn if has_cuda_ops() else None
    return fn if has_ops() else None
