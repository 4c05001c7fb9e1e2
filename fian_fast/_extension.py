"""Loading of the compiled extension ``fian_fast._C``.

``import fian_fast`` never fails because the extension is missing or was built for another
torch; the first use of a compiled op does, with the command that rebuilds it.
"""
from __future__ import annotations

import importlib
import threading
import warnings
from typing import Optional

import torch

__all__ = ["has_ops", "has_cuda_ops", "load_ops", "extension_error", "ExtensionMissingError",
           "register_fake", "register_autograd"]

BUILD_HINT = (
    "build it from the repository root with `pip install --no-build-isolation -e .` "
    "(with the torch you run; FIAN_FAST_CUDA_ARCHS picks CUDA architectures)"
)

_lock = threading.Lock()
_state: dict = {"tried": False, "module": None, "error": None}


class ExtensionMissingError(RuntimeError):
    """The compiled extension fian_fast._C is not importable."""


def _try_load() -> None:
    if _state["tried"]:  # lock-free once settled: torch.compile traces through this
        return
    with _lock:
        if _state["tried"]:
            return
        _state["tried"] = True
        try:
            module = importlib.import_module("fian_fast._C")
        except ImportError as exc:  # missing, or built against another torch (undefined symbols)
            msg = str(exc)
            if "undefined symbol" in msg or "version" in msg.lower():
                _state["error"] = (
                    f"fian_fast._C does not load with the running torch {torch.__version__} "
                    f"(it was probably built for another torch: {msg}); rebuild: {BUILD_HINT}"
                )
            else:
                _state["error"] = f"fian_fast._C is not built ({msg}); {BUILD_HINT}"
            return
        built_for = getattr(module, "torch_version", "unknown")
        if built_for != torch.__version__:
            warnings.warn(
                f"fian_fast._C was built for torch {built_for} but torch {torch.__version__} is "
                f"running; if ops misbehave, rebuild: {BUILD_HINT}",
                RuntimeWarning,
                stacklevel=3,
            )
        _state["module"] = module


def has_ops() -> bool:
    """True when the compiled extension loaded (its CPU kernels are always built)."""
    _try_load()
    return _state["module"] is not None


def has_cuda_ops() -> bool:
    """True when the extension was built with its CUDA kernels."""
    return has_ops() and bool(getattr(_state["module"], "with_cuda", 0))


def extension_error() -> Optional[str]:
    """Why the extension is unavailable, or None when it loaded."""
    _try_load()
    return _state["error"]


def load_ops():
    """The loaded extension module; raises :class:`ExtensionMissingError` saying how to build it.

    Under ``torch.compile`` tracing nothing is loaded (an op traced there was called eagerly or
    resolved through ``torch.ops`` already)."""
    if torch.compiler.is_compiling():
        return _state["module"]
    _try_load()
    if _state["module"] is None:
        raise ExtensionMissingError(_state["error"])
    return _state["module"]


def _op_exists(qualname: str) -> bool:
    """The extension loaded and defines ``qualname`` ("fian_fast::<op>"); a stale build that
    predates an op must not break ``import fian_fast`` (calling that op then fails clearly)."""
    namespace, name = qualname.split("::")
    return has_ops() and hasattr(getattr(torch.ops, namespace), name)


def register_fake(qualname: str):
    """``torch.library.register_fake`` for an op of ``fian_fast._C``, skipped (with the function
    returned unchanged) when the extension or the op is missing, so that importing never fails."""

    def decorator(fn):
        if _op_exists(qualname):
            torch.library.register_fake(qualname)(fn)
        return fn

    return decorator


def register_autograd(qualname: str, backward, setup_context=None) -> None:
    """``torch.library.register_autograd`` for an op of ``fian_fast._C`` when it is built."""
    if _op_exists(qualname):
        torch.library.register_autograd(qualname, backward, setup_context=setup_context)
