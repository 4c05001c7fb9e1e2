"""CGA's facts, stated once (cross-modal guided attention, paper section 3.3.1, eq. 4-6).

The weights bundle :class:`CGAWeights`, what the fused paths support (head size, dtypes, dot
precisions), the rules :func:`use_triton` and :func:`cga_path` that pick the path, and the
float32 dot precision :func:`default_input_precision`. ``kernels/cga.py``,
:mod:`fian_fast.ops.cga`, :mod:`fian_fast._validation`, :mod:`fian_fast.reference.cga` and the
model import them from here. This module imports neither Triton nor the kernels (``import
fian_fast`` never imports Triton).

Which path ``fian_fast.ops.cga`` takes (:func:`cga_path`), set by the environment variable
``FIAN_FAST_CGA``, read once when this module is imported:

* ``auto`` (default): the fused Triton path for CUDA tensors of a :data:`FUSED_DTYPES` dtype with
  heads of at most :data:`MAX_HEAD_DIM` features; for CPU tensors within the same limits the
  ATen path (the same fused algebra, the attention core as one ATen-backed op, the gate as plain
  tensor ops); the reference everywhere else (float64, wider heads).
* ``triton``: the fused Triton path wherever Triton can run it: CUDA tensors, and CPU tensors
  when ``TRITON_INTERPRET=1`` was set before the import (Triton's interpreter); same dtype and
  head limits; on other CPU tensors the ATen path, the reference elsewhere.
* ``reference``: always the pure-PyTorch reference (:func:`fian_fast.reference.cga.cga`).
"""
from __future__ import annotations

import importlib.util
import os
from typing import NamedTuple, Optional

import torch

__all__ = ["CGAWeights", "MAX_HEAD_DIM", "FUSED_DTYPES", "KERNEL_DTYPES", "INPUT_PRECISIONS", "ENV_VAR", "MODES",
           "MODE", "triton_runs_on", "use_triton", "cga_path", "default_input_precision"]


class CGAWeights(NamedTuple):
    """The weights of one CGA block (eq. 4-6), ``nn.Linear`` convention (``y = x @ W.T``).

    w_q, w_k, w_v: Tensor[d, d] — the heads' W_i^Q, W_i^K, W_i^V stacked on the output axis
        (head i owns rows ``i*d/n:(i+1)*d/n``);
    w_o: Tensor[d, d] — W^O of eq. 5;
    w_gate_q, w_gate_v: Tensor[d, d] — W_q^g, W_v^g of eq. 6;
    b_gate, b_info: Tensor[d] — b^g, b^i;
    w_info_q, w_info_v: Tensor[d, d] — W_q^i, W_v^i, or both None for the paper's shared
        W^i = W^g.
    """
    w_q: torch.Tensor
    w_k: torch.Tensor
    w_v: torch.Tensor
    w_o: torch.Tensor
    w_gate_q: torch.Tensor
    w_gate_v: torch.Tensor
    b_gate: torch.Tensor
    b_info: torch.Tensor
    w_info_q: Optional[torch.Tensor] = None
    w_info_v: Optional[torch.Tensor] = None


#: widest head (d / num_heads) the attention kernels take: one tile (BLOCK_D) holds a whole head
MAX_HEAD_DIM = 256

#: dtypes of the fused path (``fian_fast.ops.cga`` on CUDA, ``cga_triton``)
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: dtypes the kernels and the registered ``fian_fast::cga_*`` ops take: float64 as well, for
#: gradcheck under the interpreter (the entry points send float64 to the reference)
KERNEL_DTYPES = FUSED_DTYPES + (torch.float64,)

#: how float32 ``tl.dot``s run: exact float32, TF32 tensor cores, or 3xTF32 (near float32)
INPUT_PRECISIONS = ("ieee", "tf32", "tf32x3")

ENV_VAR = "FIAN_FAST_CGA"
MODES = ("auto", "triton", "reference")


def _read_mode(environ) -> str:
    value = environ.get(ENV_VAR, "auto")
    if value not in MODES:
        raise ValueError(f"{ENV_VAR} should be one of {', '.join(repr(m) for m in MODES)}, got {value!r}")
    return value


#: the path rule's setting (``FIAN_FAST_CGA``), read once, here, outside any traced code
MODE = _read_mode(os.environ)

# Triton reads TRITON_INTERPRET when it compiles a kernel module (which fian_fast imports lazily,
# after this): a CPU tensor can take the Triton path only when the interpreter was asked for.
# find_spec locates triton without importing it.
_HAS_TRITON = importlib.util.find_spec("triton") is not None
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def triton_runs_on(device_type: str) -> bool:
    """Whether Triton can run kernels on tensors of ``device_type``: CUDA when Triton is
    installed, the CPU under ``TRITON_INTERPRET=1``."""
    if not _HAS_TRITON:
        return False
    return device_type == "cuda" or (device_type == "cpu" and _INTERPRET)


def use_triton(device_type: str, dtype: torch.dtype, head_dim: int) -> bool:
    """The one rule between the fused Triton path and the reference (see the module docstring):
    True when ``fian_fast.ops.cga`` should run the fused path on tensors of ``device_type`` and
    ``dtype`` with heads of ``head_dim`` features."""
    if MODE == "reference" or dtype not in FUSED_DTYPES or head_dim > MAX_HEAD_DIM:
        return False
    if MODE == "auto":
        return device_type == "cuda" and _HAS_TRITON
    return triton_runs_on(device_type)


def cga_path(device_type: str, dtype: torch.dtype, head_dim: int) -> str:
    """Which path ``fian_fast.ops.cga`` takes: ``"triton"`` where :func:`use_triton` says;
    ``"aten"`` (the fused algebra with the attention core as one ATen-backed op and the gate as
    plain tensor ops) for CPU tensors of a :data:`FUSED_DTYPES` dtype with heads of at most
    :data:`MAX_HEAD_DIM` features unless ``FIAN_FAST_CGA=reference``; ``"reference"`` elsewhere."""
    if use_triton(device_type, dtype, head_dim):
        return "triton"
    if MODE != "reference" and device_type == "cpu" and dtype in FUSED_DTYPES and head_dim <= MAX_HEAD_DIM:
        return "aten"
    return "reference"


def _fp32_matmul_precision() -> str:
    # the per-backend setting (torch >= 2.9) first: once it has been written, the legacy getter raises
    cublas = getattr(torch.backends.cuda.matmul, "fp32_precision", "none")
    if cublas != "none":
        return "ieee" if cublas == "ieee" else "tf32"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


# torch.compile cannot trace the getters above (C functions it skips): the result is taken as a
# constant at trace time, as torch.compiler.assume_constant_result would mark it (it sets this
# attribute, but importing it imports torch._dynamo). Sound because dynamo's global-state guard
# covers cuBLAS's TF32 setting, old and new API alike: changing it recompiles, which reads it again.
_fp32_matmul_precision._dynamo_marked_constant = True


def default_input_precision(dtype: torch.dtype) -> str:
    """How the fused path runs float32 dots when not told: as torch runs float32 matmuls
    (``torch.backends.cuda.matmul.fp32_precision`` when set, else
    :func:`torch.get_float32_matmul_precision`): ``"ieee"`` for ``"ieee"``/``"highest"`` (the
    default), ``"tf32"`` otherwise, so the Triton dots and the cuBLAS projections of one call
    share a precision. Half types have no choice (``"tf32"``, unused)."""
    return _fp32_matmul_precision() if dtype == torch.float32 else "tf32"
