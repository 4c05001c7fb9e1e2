"""``fian_fast.ops.cga``: cross-modal guided attention (paper section 3.3.1, eq. 4-6).

Same signature and function as :func:`fian_fast.reference.cga.cga`. On CUDA (float32, float16,
bfloat16, heads of at most 256 features) it runs the fused Triton path :func:`cga_triton`; on the
CPU, for float64 anywhere and for wider heads, it runs the reference. :func:`cga_triton` runs the
Triton path on any device (on the CPU under ``TRITON_INTERPRET=1``, which the tests use).

Exact algebraic fusions of the Triton path (each is an identity, not an approximation):

1. One GEMM per input for the projections sharing it:
   ``Q [W_q; W_q^g (; W_q^i)]^T`` and ``V [W_K; W_V]^T``.
2. W^O folded into the gate's value projections: ``CMA(Q, V) W_v^g^T = heads (W_v^g W^O)^T``,
   so ``x = Q W_q^g^T + heads (W_v^g W^O)^T`` with ``W_v^g W^O`` ([d, d]) formed once per call
   and the addition done by the GEMM's accumulate (``addmm``); CMA itself is never materialized.
3. The attention core (online softmax, lengths as ints, eq. 4) and the gate
   ``sigmoid(x + b^g) * (x + b^i)`` (or ``sigmoid(g + b^g) * (i + b^i)``, eq. 6) are Triton
   kernels registered as ``torch.library.triton_op``s with autograd
   (``fian_fast::cga_attention``, ``fian_fast::cga_gate``), so torch.compile sees through them.

Rows ``>= query_lengths[b]`` of the output are zero; a sample with ``key_lengths[b] == 0`` gets
CMA = 0 (the gate still sees its query), never NaN.

Float32 dots follow torch's own float32 matmul setting (``torch.backends.cuda.matmul.fp32_precision``
when set, else :func:`torch.get_float32_matmul_precision`): ``"ieee"``/``"highest"`` (the default)
runs them in IEEE float32, otherwise as TF32, so the Triton dots and the cuBLAS projections of one
call share a precision.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .._validation import check_cga_args, check_cga_attention_args, check_cga_gate_args, check_like, check_tensor
from ..reference.cga import CGAWeights
from ..reference.cga import cga as _cga_reference

__all__ = ["cga", "cga_triton", "CGAWeights"]

_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_HEAD_DIM = 256  # kernels/cga.py MAX_HEAD_DIM (not imported here: that module imports triton)


def _kernels():
    from ..kernels import cga as kernels  # imports triton: only on the Triton path

    return kernels


# ---- torch.library registration ------------------------------------------------------------
# torch.library.triton_op imports triton, so the ops are registered on first use of the Triton
# path, not at import time (``import fian_fast`` never imports triton).

def _cga_attention(q: Tensor, k: Tensor, v: Tensor, query_lengths: Tensor, key_lengths: Tensor,
                   num_heads: int, input_precision: str) -> Tuple[Tensor, Tensor]:
    """fian_fast::cga_attention — heads [B, Lq, d] and base-2 LSE [B, H, Lq] float32 (eq. 4)."""
    check_cga_attention_args("cga_attention", q, k, v, query_lengths, key_lengths, num_heads, input_precision)
    return _kernels().cga_attention_fwd(q, k, v, query_lengths, key_lengths, num_heads, input_precision)


def _cga_attention_backward(grad_heads: Tensor, q: Tensor, k: Tensor, v: Tensor, heads: Tensor, lse: Tensor,
                            query_lengths: Tensor, key_lengths: Tensor, num_heads: int,
                            input_precision: str) -> Tuple[Tensor, Tensor, Tensor]:
    """fian_fast::cga_attention_backward — (dq, dk, dv), deterministic."""
    fn = "cga_attention_backward"
    check_cga_attention_args(fn, q, k, v, query_lengths, key_lengths, num_heads, input_precision)
    check_like(fn, "q", q, grad_heads=grad_heads, heads=heads)
    check_tensor(fn, "lse", lse, dim=3, shape=(q.shape[0], num_heads, q.shape[1]))
    if lse.dtype != torch.float32 or lse.device != q.device:
        raise ValueError(f"{fn}: lse should be float32 on {q.device}, got {lse.dtype} on {lse.device}")
    return _kernels().cga_attention_bwd(grad_heads, q, k, v, heads, lse, query_lengths, key_lengths, num_heads,
                                        input_precision)


def _attention_setup(ctx, inputs, output):
    q, k, v, query_lengths, key_lengths, num_heads, input_precision = inputs
    heads, lse = output
    ctx.save_for_backward(q, k, v, heads, lse, query_lengths, key_lengths)
    ctx.num_heads, ctx.input_precision = num_heads, input_precision
    ctx.mark_non_differentiable(lse)


def _attention_backward(ctx, grad_heads, grad_lse):
    q, k, v, heads, lse, query_lengths, key_lengths = ctx.saved_tensors
    dq, dk, dv = torch.ops.fian_fast.cga_attention_backward(grad_heads, q, k, v, heads, lse, query_lengths,
                                                            key_lengths, ctx.num_heads, ctx.input_precision)
    return dq, dk, dv, None, None, None, None


def _cga_gate(x: Tensor, info: Optional[Tensor], b_gate: Tensor, b_info: Tensor, query_lengths: Tensor) -> Tensor:
    """fian_fast::cga_gate — sigmoid(x + b_g) * (info or x + b_i), zero padded rows (eq. 6)."""
    check_cga_gate_args("cga_gate", x, info, b_gate, b_info, query_lengths)
    return _kernels().cga_gate_fwd(x, info, b_gate, b_info, query_lengths)


def _cga_gate_backward(grad_out: Tensor, x: Tensor, info: Optional[Tensor], b_gate: Tensor, b_info: Tensor,
                       query_lengths: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """fian_fast::cga_gate_backward — (dx, dinfo, db_gate, db_info); dinfo is empty [0] for the
    shared gate (a schema output cannot be None)."""
    check_cga_gate_args("cga_gate_backward", x, info, b_gate, b_info, query_lengths)
    check_like("cga_gate_backward", "x", x, grad_out=grad_out)
    dx, di, dbg, dbi = _kernels().cga_gate_bwd(grad_out, x, info, b_gate, b_info, query_lengths)
    return dx, (di if di is not None else x.new_empty((0,))), dbg, dbi


def _gate_setup(ctx, inputs, output):
    x, info, b_gate, b_info, query_lengths = inputs
    ctx.separate = info is not None
    ctx.save_for_backward(x, info if info is not None else x, b_gate, b_info, query_lengths)


def _gate_backward(ctx, grad_out):
    x, info, b_gate, b_info, query_lengths = ctx.saved_tensors
    dx, di, dbg, dbi = torch.ops.fian_fast.cga_gate_backward(grad_out, x, info if ctx.separate else None, b_gate,
                                                             b_info, query_lengths)
    return dx, (di if ctx.separate else None), dbg, dbi, None


_REGISTERED = False


def _register() -> None:
    """Register the four triton_ops and their autograd (idempotent). Called through
    ``torch.compiler.disable`` (applied here, not at import: it imports dynamo, which imports
    triton) so that a first call inside a compiled region runs it eagerly."""
    global _REGISTERED
    if _REGISTERED:
        return
    for name, impl in (("cga_attention", _cga_attention), ("cga_attention_backward", _cga_attention_backward),
                       ("cga_gate", _cga_gate), ("cga_gate_backward", _cga_gate_backward)):
        torch.library.triton_op(f"fian_fast::{name}", impl, mutates_args=())
    torch.library.register_autograd("fian_fast::cga_attention", _attention_backward, setup_context=_attention_setup)
    torch.library.register_autograd("fian_fast::cga_gate", _gate_backward, setup_context=_gate_setup)
    _REGISTERED = True


# ---- entry points ---------------------------------------------------------------------------

def _default_precision(dtype: torch.dtype) -> str:
    if dtype != torch.float32:
        return "tf32"  # unused for half types
    # the per-backend setting (torch >= 2.9) first: once it has been written, the legacy getter raises
    cublas = getattr(torch.backends.cuda.matmul, "fp32_precision", "none")
    if cublas != "none":
        return "ieee" if cublas == "ieee" else "tf32"
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _cga_fused(query: Tensor, key_value: Tensor, query_lengths: Tensor, key_lengths: Tensor, w: CGAWeights,
               num_heads: int, input_precision: str) -> Tensor:
    if not _REGISTERED:
        torch.compiler.disable(_register)()
    B, Lq, d = query.shape
    Lk = key_value.shape[1]
    separate = w.w_info_q is not None
    query_lengths, key_lengths = query_lengths.contiguous(), key_lengths.contiguous()  # read as flat arrays
    # fusion 1: one GEMM per shared input
    w_query_side = torch.cat([w.w_q, w.w_gate_q, w.w_info_q] if separate else [w.w_q, w.w_gate_q])
    proj = query.reshape(B * Lq, d) @ w_query_side.t()                      # [B*Lq, 2d | 3d]
    kv = key_value.reshape(B * Lk, d) @ torch.cat([w.w_k, w.w_v]).t()       # [B*Lk, 2d]
    q = proj[:, :d].view(B, Lq, d)
    k = kv[:, :d].view(B, Lk, d)
    v = kv[:, d:].view(B, Lk, d)
    heads, _ = torch.ops.fian_fast.cga_attention(q, k, v, query_lengths, key_lengths, num_heads, input_precision)
    # fusion 2: W^O folded into the gate's value projections
    w_heads = torch.cat([w.w_gate_v @ w.w_o, w.w_info_v @ w.w_o]) if separate else w.w_gate_v @ w.w_o
    pre = torch.addmm(proj[:, d:], heads.view(B * Lq, d), w_heads.t())      # [B*Lq, d | 2d]
    x = pre[:, :d].view(B, Lq, d)
    info = pre[:, d:].view(B, Lq, d) if separate else None
    return torch.ops.fian_fast.cga_gate(x, info, w.b_gate, w.b_info, query_lengths)


def cga_triton(query: Tensor, key_value: Tensor, query_lengths: Tensor, key_lengths: Tensor, weights: CGAWeights,
               num_heads: int, *, input_precision: Optional[str] = None, validate: bool = True) -> Tensor:
    """The fused Triton path of :func:`cga` on any device (CPU tensors need ``TRITON_INTERPRET=1``
    set before the first call). Arguments as :func:`cga`; float32, float16 or bfloat16.

    ``input_precision`` (``"ieee"``, ``"tf32"``, ``"tf32x3"``) sets how float32 ``tl.dot``s run;
    None follows :func:`torch.get_float32_matmul_precision` (``"highest"`` -> ``"ieee"``).
    """
    fn = "cga_triton"
    check_cga_args(fn, query, key_value, query_lengths, key_lengths, weights, num_heads, validate)
    if query.dtype not in _TRITON_DTYPES:
        raise ValueError(f"{fn}: query should be float32, float16 or bfloat16, got {query.dtype}")
    if query.shape[2] // num_heads > _MAX_HEAD_DIM:
        raise ValueError(f"{fn}: num_heads should leave heads of at most {_MAX_HEAD_DIM} features, got "
                         f"num_heads = {num_heads} for d = {query.shape[2]}")
    if input_precision is None:
        input_precision = _default_precision(query.dtype)
    if input_precision not in ("ieee", "tf32", "tf32x3"):
        raise ValueError(f"{fn}: input_precision should be 'ieee', 'tf32', 'tf32x3' or None, got {input_precision!r}")
    return _cga_fused(query, key_value, query_lengths, key_lengths, weights, num_heads, input_precision)


def cga(query: Tensor, key_value: Tensor, query_lengths: Tensor, key_lengths: Tensor, weights: CGAWeights,
        num_heads: int, *, validate: bool = True) -> Tensor:
    """CGA(Q, V) of eq. 6 = information gate over CMA(Q, V) (eq. 4-5), fused on CUDA.

    Args:
        query: Tensor[B, Lq, d] float — the modality that asks (Q).
        key_value: Tensor[B, Lk, d] float, dtype and device of ``query`` — the attended modality.
        query_lengths, key_lengths: int Tensor[B], valid lengths in [0, Lq] and [0, Lk].
        weights: :class:`CGAWeights` — W_i^Q, W_i^K, W_i^V, W^O, the gate's W_q^g, W_v^g, b^g, b^i
            and optionally W_q^i, W_v^i; every tensor in the dtype and on the device of ``query``.
        num_heads: n, dividing d.
        validate: check that the lengths lie in range (one host read). ``False`` for callers
            whose lengths were checked where they entered (the model): only metadata is checked.
    Returns:
        Tensor[B, Lq, d], dtype of ``query`` (the autocast dtype under CUDA autocast), zero at rows
        >= query_lengths[b]. Differentiable w.r.t. ``query``, ``key_value`` and every weight.
    """
    fn = "cga"
    on_cuda = isinstance(query, Tensor) and query.device.type == "cuda"
    if on_cuda and torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")

        def cast(a):  # autocast's own rule: float64 is never cast (float64 inputs then take the reference)
            return a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() and a.dtype != torch.float64 else a

        if isinstance(weights, CGAWeights):
            weights = CGAWeights(*(cast(w) for w in weights))
        with torch.autocast("cuda", enabled=False):
            return cga(cast(query), cast(key_value), query_lengths, key_lengths, weights, num_heads, validate=validate)
    check_cga_args(fn, query, key_value, query_lengths, key_lengths, weights, num_heads, validate)
    if on_cuda and query.dtype in _TRITON_DTYPES and query.shape[2] // num_heads <= _MAX_HEAD_DIM:
        return _cga_fused(query, key_value, query_lengths, key_lengths, weights, num_heads,
                          _default_precision(query.dtype))
    return _cga_reference(query, key_value, query_lengths, key_lengths, weights, num_heads)
