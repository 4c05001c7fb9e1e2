"""``fian_fast.ops.cga``: cross-modal guided attention (paper section 3.3.1, eq. 4-6).

Same signature and function as :func:`fian_fast.reference.cga.cga`. :func:`cga` takes the path
:func:`fian_fast._cga.cga_path` picks: by default the fused Triton path for CUDA tensors of
float32, float16 or bfloat16 with heads of at most 256 features, the ATen path (below) for CPU
tensors within the same limits, and the reference everywhere else; the environment variable
``FIAN_FAST_CGA`` (``auto`` | ``triton`` | ``reference``, read once at import, see
:mod:`fian_fast._cga`) overrides that rule. :func:`cga_triton` runs the Triton path on any device
Triton runs on (on the CPU under ``TRITON_INTERPRET=1``, which the tests use).

The ATen path (CPU) applies fusions 1 and 2 below and runs the attention core as one more op,
``fian_fast::cga_attention_aten`` (batched GEMMs and a softmax in float32, float64 for float64;
its backward, ``fian_fast::cga_attention_aten_backward``, works from the probabilities the
forward returns, no recomputation), and the gate as plain tensor ops. Under ``torch.compile``
the attention is one node of the graph instead of the reference's masks, reshapes and softmax
traced op by op: fewer C++ kernels for inductor to generate and build, and the same GEMMs.
It matches the reference to rounding (float32 within 1e-6 forward and backward in the tests).

Exact algebraic fusions of the fused paths (each is an identity, not an approximation):

1. One GEMM per input for the projections sharing it:
   ``Q [W_q; W_q^g (; W_q^i)]^T`` and ``V [W_K; W_V]^T``.
2. W^O folded into the gate's value projections: ``CMA(Q, V) W_v^g^T = heads (W_v^g W^O)^T``,
   so ``x = Q W_q^g^T + heads (W_v^g W^O)^T`` with ``W_v^g W^O`` ([d, d]) formed once per call
   and the addition done by the GEMM's accumulate (``addmm``); CMA itself is never materialized.
3. The attention core (online softmax, lengths as ints, eq. 4) and the gate
   ``sigmoid(x + b^g) * (x + b^i)`` (or ``sigmoid(g + b^g) * (i + b^i)``, eq. 6) are Triton
   kernels behind four ``torch.library`` ops with fake kernels and autograd
   (``fian_fast::cga_attention``, ``fian_fast::cga_gate`` and their backwards).

Registration: the four ops are ``torch.library.custom_op``s defined when this module is imported
(``import fian_fast`` imports it); their implementations import the kernels (and Triton) at call
time. ``torch.library.triton_op`` was weighed against this: it lets inductor see the kernels
and call them from its generated code, but registering one imports Triton (it scans the function
for kernels), so it could only be registered lazily, on first use — and a first use inside
``torch.compile(fullgraph=True)`` cannot register anything (``train --compile`` failed at step 1
in a fresh process). Custom ops are opaque to inductor, which calls them as fallback kernels:
the cost is one dispatcher round trip per op call (none under CUDA graphs), the kernels
themselves being the same. In exchange they register without Triton, compile first in a fresh
process, run under the interpreter with any torch (``wrap_triton`` is not needed), and pass
``torch.library.opcheck`` on the CPU.

Rows ``>= query_lengths[b]`` of the output are zero; a sample with ``key_lengths[b] == 0`` gets
CMA = 0 (the gate still sees its query), never NaN.

Float32 dots follow torch's own float32 matmul setting
(:func:`fian_fast._cga.default_input_precision`): IEEE float32 by default, TF32 when torch runs
float32 matmuls as TF32, so the Triton dots and the cuBLAS projections of one call share a
precision. Under ``torch.compile`` the setting is read at trace time (changing it recompiles).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._cga import CGAWeights, cga_path, default_input_precision
from .._validation import (check_cga_args, check_cga_attention_args, check_cga_gate_args, check_cga_triton_args,
                           check_like, check_tensor, check_triton_device)
from ..reference.cga import _acc_dtype, length_mask, cga as _cga_reference

__all__ = ["cga", "cga_triton", "CGAWeights"]


def _kernels():
    from ..kernels import cga as kernels  # imports triton: only when a Triton op runs

    return kernels


# ---- torch.library ops ------------------------------------------------------------------------

@torch.library.custom_op("fian_fast::cga_attention", mutates_args=(),
                         schema="(Tensor q, Tensor k, Tensor v, Tensor query_lengths, Tensor key_lengths, "
                                "int num_heads, str input_precision) -> (Tensor, Tensor)")
def _cga_attention(q, k, v, query_lengths, key_lengths, num_heads, input_precision):
    """fian_fast::cga_attention — heads [B, Lq, d] and base-2 LSE [B, H, Lq] float32 (eq. 4)."""
    check_cga_attention_args("cga_attention", q, k, v, query_lengths, key_lengths, num_heads, input_precision)
    check_triton_device("cga_attention", "q", q)
    return _kernels().cga_attention_fwd(q, k, v, query_lengths, key_lengths, num_heads, input_precision)


@_cga_attention.register_fake
def _(q, k, v, query_lengths, key_lengths, num_heads, input_precision):
    check_cga_attention_args("cga_attention", q, k, v, query_lengths, key_lengths, num_heads, input_precision)
    B, Lq, d = q.shape
    return q.new_empty((B, Lq, d)), q.new_empty((B, num_heads, Lq), dtype=torch.float32)


def _check_attention_backward(fn, grad_heads, q, k, v, heads, lse, query_lengths, key_lengths, num_heads,
                              input_precision):
    check_cga_attention_args(fn, q, k, v, query_lengths, key_lengths, num_heads, input_precision)
    check_like(fn, "q", q, grad_heads=grad_heads, heads=heads)
    check_tensor(fn, "lse", lse, dim=3, shape=(q.shape[0], num_heads, q.shape[1]))
    if lse.dtype != torch.float32 or lse.device != q.device:
        raise ValueError(f"{fn}: lse should be float32 on {q.device}, got {lse.dtype} on {lse.device}")


@torch.library.custom_op("fian_fast::cga_attention_backward", mutates_args=(),
                         schema="(Tensor grad_heads, Tensor q, Tensor k, Tensor v, Tensor heads, Tensor lse, "
                                "Tensor query_lengths, Tensor key_lengths, int num_heads, str input_precision) "
                                "-> (Tensor, Tensor, Tensor)")
def _cga_attention_backward(grad_heads, q, k, v, heads, lse, query_lengths, key_lengths, num_heads, input_precision):
    """fian_fast::cga_attention_backward — (dq, dk, dv), contiguous, deterministic."""
    fn = "cga_attention_backward"
    _check_attention_backward(fn, grad_heads, q, k, v, heads, lse, query_lengths, key_lengths, num_heads,
                              input_precision)
    check_triton_device(fn, "q", q)
    return _kernels().cga_attention_bwd(grad_heads, q, k, v, heads, lse, query_lengths, key_lengths, num_heads,
                                        input_precision)


@_cga_attention_backward.register_fake
def _(grad_heads, q, k, v, heads, lse, query_lengths, key_lengths, num_heads, input_precision):
    _check_attention_backward("cga_attention_backward", grad_heads, q, k, v, heads, lse, query_lengths, key_lengths,
                              num_heads, input_precision)
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


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


_cga_attention.register_autograd(_attention_backward, setup_context=_attention_setup)


@torch.library.custom_op("fian_fast::cga_gate", mutates_args=(),
                         schema="(Tensor x, Tensor? info, Tensor b_gate, Tensor b_info, Tensor query_lengths) "
                                "-> Tensor")
def _cga_gate(x, info, b_gate, b_info, query_lengths):
    """fian_fast::cga_gate — sigmoid(x + b_g) * (info or x + b_i), zero padded rows (eq. 6)."""
    check_cga_gate_args("cga_gate", x, info, b_gate, b_info, query_lengths)
    check_triton_device("cga_gate", "x", x)
    return _kernels().cga_gate_fwd(x, info, b_gate, b_info, query_lengths)


@_cga_gate.register_fake
def _(x, info, b_gate, b_info, query_lengths):
    check_cga_gate_args("cga_gate", x, info, b_gate, b_info, query_lengths)
    return x.new_empty(x.shape)


def _check_gate_backward(fn, grad_out, x, info, b_gate, b_info, query_lengths):
    check_cga_gate_args(fn, x, info, b_gate, b_info, query_lengths)
    check_like(fn, "x", x, grad_out=grad_out)


@torch.library.custom_op("fian_fast::cga_gate_backward", mutates_args=(),
                         schema="(Tensor grad_out, Tensor x, Tensor? info, Tensor b_gate, Tensor b_info, "
                                "Tensor query_lengths) -> (Tensor, Tensor, Tensor, Tensor)")
def _cga_gate_backward(grad_out, x, info, b_gate, b_info, query_lengths):
    """fian_fast::cga_gate_backward — (dx, dinfo, db_gate, db_info); dinfo is empty [0] for the
    shared gate (a schema output cannot be None)."""
    _check_gate_backward("cga_gate_backward", grad_out, x, info, b_gate, b_info, query_lengths)
    check_triton_device("cga_gate_backward", "x", x)
    dx, di, dbg, dbi = _kernels().cga_gate_bwd(grad_out, x, info, b_gate, b_info, query_lengths)
    return dx, (di if di is not None else x.new_empty((0,))), dbg, dbi


@_cga_gate_backward.register_fake
def _(grad_out, x, info, b_gate, b_info, query_lengths):
    _check_gate_backward("cga_gate_backward", grad_out, x, info, b_gate, b_info, query_lengths)
    return (x.new_empty(x.shape), x.new_empty(x.shape if info is not None else (0,)), b_gate.new_empty(b_gate.shape),
            b_info.new_empty(b_info.shape))


def _gate_setup(ctx, inputs, output):
    x, info, b_gate, b_info, query_lengths = inputs
    ctx.separate = info is not None
    ctx.save_for_backward(x, info if info is not None else x, b_gate, b_info, query_lengths)


def _gate_backward(ctx, grad_out):
    x, info, b_gate, b_info, query_lengths = ctx.saved_tensors
    dx, di, dbg, dbi = torch.ops.fian_fast.cga_gate_backward(grad_out, x, info if ctx.separate else None, b_gate,
                                                             b_info, query_lengths)
    return dx, (di if ctx.separate else None), dbg, dbi, None


_cga_gate.register_autograd(_gate_backward, setup_context=_gate_setup)


# ---- the attention core in ATen (the CPU path) -----------------------------------------------

def _heads_view(t: Tensor, num_heads: int, acc: torch.dtype) -> Tensor:
    B, L, d = t.shape
    return t.to(acc).reshape(B, L, num_heads, d // num_heads).transpose(1, 2)      # [B, H, L, dk]


def _attention_probs(q, k, query_lengths, key_lengths, num_heads, acc):
    """Eq. 4's softmax(Q_i K_i^T / sqrt(d_k)) of every head, float [B, H, Lq, Lk], zero at padded
    query rows, padded keys and for samples without a key."""
    Lq, Lk = q.shape[1], k.shape[1]
    scores = _heads_view(q, num_heads, acc) @ _heads_view(k, num_heads, acc).transpose(-1, -2)
    scores = scores * (q.shape[2] // num_heads) ** -0.5
    key_ok = length_mask(key_lengths, Lk)[:, None, None, :]
    row_ok = length_mask(query_lengths, Lq)[:, None, :, None]
    probs = torch.softmax(scores.masked_fill(~key_ok, float("-inf")), dim=-1)
    # a row whose every key is padding is NaN after the softmax: where() drops it, gradient included
    return torch.where(key_ok & row_ok & (key_lengths > 0)[:, None, None, None], probs, 0.0)


def _merge_heads(t: Tensor, dtype: torch.dtype) -> Tensor:
    B, H, L, dk = t.shape
    return t.transpose(1, 2).reshape(B, L, H * dk).to(dtype)


@torch.library.custom_op("fian_fast::cga_attention_aten", mutates_args=(),
                         schema="(Tensor q, Tensor k, Tensor v, Tensor query_lengths, Tensor key_lengths, "
                                "int num_heads) -> (Tensor, Tensor)")
def _cga_attention_aten(q, k, v, query_lengths, key_lengths, num_heads):
    """fian_fast::cga_attention_aten — the function of ``fian_fast::cga_attention`` in ATen calls
    (batched GEMMs and a softmax, any device): heads [B, Lq, d] in q's dtype and the attention
    probabilities [B, H, Lq, Lk] (float32, float64 for float64) that its backward reads."""
    check_cga_attention_args("cga_attention_aten", q, k, v, query_lengths, key_lengths, num_heads, "ieee")
    acc = _acc_dtype(q)
    probs = _attention_probs(q, k, query_lengths, key_lengths, num_heads, acc)
    return _merge_heads(probs @ _heads_view(v, num_heads, acc), q.dtype), probs


@_cga_attention_aten.register_fake
def _(q, k, v, query_lengths, key_lengths, num_heads):
    check_cga_attention_args("cga_attention_aten", q, k, v, query_lengths, key_lengths, num_heads, "ieee")
    B, Lq, d = q.shape
    acc = _acc_dtype(q)
    return q.new_empty((B, Lq, d)), q.new_empty((B, num_heads, Lq, k.shape[1]), dtype=acc)


@torch.library.custom_op("fian_fast::cga_attention_aten_backward", mutates_args=(),
                         schema="(Tensor grad_heads, Tensor q, Tensor k, Tensor v, Tensor probs, int num_heads) "
                                "-> (Tensor, Tensor, Tensor)")
def _cga_attention_aten_backward(grad_heads, q, k, v, probs, num_heads):
    """fian_fast::cga_attention_aten_backward — (dq, dk, dv) in q's dtype, from the saved
    probabilities P: dV = P^T dO, dS = P * (dO V^T - rowsum(P * dO V^T)) / sqrt(d_k),
    dQ = dS K, dK = dS^T Q."""
    acc = probs.dtype
    grad = _heads_view(grad_heads, num_heads, acc)
    dp = grad @ _heads_view(v, num_heads, acc).transpose(-1, -2)
    ds = probs * (dp - (probs * dp).sum(-1, keepdim=True)) * (q.shape[2] // num_heads) ** -0.5
    dq = ds @ _heads_view(k, num_heads, acc)
    dk = ds.transpose(-1, -2) @ _heads_view(q, num_heads, acc)
    dv = probs.transpose(-1, -2) @ grad
    return _merge_heads(dq, q.dtype), _merge_heads(dk, k.dtype), _merge_heads(dv, v.dtype)


@_cga_attention_aten_backward.register_fake
def _(grad_heads, q, k, v, probs, num_heads):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _attention_aten_setup(ctx, inputs, output):
    q, k, v, _, _, num_heads = inputs
    ctx.save_for_backward(q, k, v, output[1])
    ctx.num_heads = num_heads
    ctx.mark_non_differentiable(output[1])


def _attention_aten_backward(ctx, grad_heads, grad_probs):
    q, k, v, probs = ctx.saved_tensors
    dq, dk, dv = torch.ops.fian_fast.cga_attention_aten_backward(grad_heads, q, k, v, probs, ctx.num_heads)
    return dq, dk, dv, None, None, None


_cga_attention_aten.register_autograd(_attention_aten_backward, setup_context=_attention_aten_setup)


def _gate_aten(x: Tensor, info: Optional[Tensor], b_gate: Tensor, b_info: Tensor, query_lengths: Tensor) -> Tensor:
    """The gate of eq. 6 as plain tensor ops (a compiler fuses them with their neighbours):
    sigmoid(x + b_g) * (info or x + b_i) in float32 (float64 for float64), zero padded rows."""
    acc = _acc_dtype(x)
    xa = x.to(acc)
    out = torch.sigmoid(xa + b_gate.to(acc)) * ((info.to(acc) if info is not None else xa) + b_info.to(acc))
    row_ok = length_mask(query_lengths, x.shape[1])
    return (out * row_ok[..., None].to(acc)).to(x.dtype)


# ---- entry points ---------------------------------------------------------------------------

def _cga_fused(query: Tensor, key_value: Tensor, query_lengths: Tensor, key_lengths: Tensor, w: CGAWeights,
               num_heads: int, input_precision: str, kernels: str = "triton") -> Tensor:
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
    if kernels == "triton":
        heads, _ = torch.ops.fian_fast.cga_attention(q, k, v, query_lengths, key_lengths, num_heads,
                                                     input_precision)
    else:
        heads, _ = torch.ops.fian_fast.cga_attention_aten(q, k, v, query_lengths, key_lengths, num_heads)
    # fusion 2: W^O folded into the gate's value projections
    w_heads = torch.cat([w.w_gate_v @ w.w_o, w.w_info_v @ w.w_o]) if separate else w.w_gate_v @ w.w_o
    pre = torch.addmm(proj[:, d:], heads.view(B * Lq, d), w_heads.t())      # [B*Lq, d | 2d]
    x = pre[:, :d].view(B, Lq, d)
    info = pre[:, d:].view(B, Lq, d) if separate else None
    if kernels == "triton":
        return torch.ops.fian_fast.cga_gate(x, info, w.b_gate, w.b_info, query_lengths)
    return _gate_aten(x, info, w.b_gate, w.b_info, query_lengths)


def cga_triton(query: Tensor, key_value: Tensor, query_lengths: Tensor, key_lengths: Tensor, weights: CGAWeights,
               num_heads: int, *, input_precision: Optional[str] = None, validate: bool = True) -> Tensor:
    """The fused Triton path of :func:`cga` on any device Triton runs on (CPU tensors need
    ``TRITON_INTERPRET=1`` set before ``import fian_fast``), whatever ``FIAN_FAST_CGA`` says.
    Arguments as :func:`cga`; float32, float16 or bfloat16; heads of at most 256 features.

    ``input_precision`` (``"ieee"``, ``"tf32"``, ``"tf32x3"``) sets how float32 ``tl.dot``s run;
    None follows torch's float32 matmul setting (:func:`fian_fast._cga.default_input_precision`).
    """
    fn = "cga_triton"
    check_cga_args(fn, query, key_value, query_lengths, key_lengths, weights, num_heads, validate)
    check_cga_triton_args(fn, query, num_heads, input_precision)
    if input_precision is None:
        input_precision = default_input_precision(query.dtype)
    return _cga_fused(query, key_value, query_lengths, key_lengths, weights, num_heads, input_precision)


def cga(query: Tensor, key_value: Tensor, query_lengths: Tensor, key_lengths: Tensor, weights: CGAWeights,
        num_heads: int, *, validate: bool = True) -> Tensor:
    """CGA(Q, V) of eq. 6 = information gate over CMA(Q, V) (eq. 4-5) on the path
    :func:`fian_fast._cga.cga_path` picks: fused Triton kernels (CUDA by default), the ATen path
    (CPU), the reference elsewhere (float64, heads wider than 256).

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
    path = cga_path(query.device.type, query.dtype, query.shape[2] // num_heads)
    if path == "triton":
        return _cga_fused(query, key_value, query_lengths, key_lengths, weights, num_heads,
                          default_input_precision(query.dtype))
    if path == "aten":
        return _cga_fused(query, key_value, query_lengths, key_lengths, weights, num_heads, "ieee", kernels="aten")
    return _cga_reference(query, key_value, query_lengths, key_lengths, weights, num_heads)
