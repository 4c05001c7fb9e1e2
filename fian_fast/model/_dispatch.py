"""Lazy lookup of the fused ops and their pure-PyTorch twins.

The model runs before (or without) the fused operators: each lookup happens at call time and
returns ``None`` when ``fian_fast.ops.<name>`` / ``fian_fast.reference.<name>`` does not exist,
so the caller falls back to the reference path or to a plain implementation of its own.
"""
from __future__ import annotations

import functools
import importlib
from typing import Callable, Optional

__all__ = ["fast_op", "reference_op"]


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


def reference_op(name: str) -> Optional[Callable]:
    """``fian_fast.reference.<name>`` or None when that oracle is not there."""
    return _lookup("fian_fast.reference", name)
