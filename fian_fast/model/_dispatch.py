"""Lazy lookup of the fused ops.

The model runs before (or without) the fused operators: each lookup happens at the first call
and returns ``None`` when ``fian_fast.ops.<name>`` does not exist, so the caller falls back to
its pure-PyTorch twin in :mod:`fian_fast.reference`.
"""
from __future__ import annotations

import functools
import importlib
from typing import Callable, Optional

__all__ = ["fast_op"]


@functools.lru_cache(maxsize=None)
def _lookup(package: str, name: str) -> Optional[Callable]:
    pkg = importlib.import_module(package)
    fn = getattr(pkg, name, None)
    if callable(fn):
        return fn
    try:  # a module ``<package>.<name>`` holding a function of the same name
        module = importlib.import_module(f"{package}.{name}")
    except ImportError:
        return None
    fn = getattr(module, name, None)
    return fn if callable(fn) else None


def fast_op(name: str) -> Optional[Callable]:
    """``fian_fast.ops.<name>`` or None when that op is not there."""
    return _lookup("fian_fast.ops", name)
