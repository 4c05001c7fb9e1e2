"""Triton kernels of the cross-modal guided attention (CGA, paper section 3.3.1, eq. 4-6).

No autograd and no ``nn`` here: ``fian_fast.ops.cga`` registers these launchers with
``torch.library`` and composes them with the projections.

Attention core (eq. 4, per head, before the concatenation and W^O of eq. 5)::

    heads[b, i, h*dk:(h+1)*dk] = softmax_j(q_h[b, i] . k_h[b, j] / sqrt(dk)) v_h[b, j]

over keys ``j < key_lengths[b]``; rows ``i >= query_lengths[b]`` and rows of a sample with no key
are zero (never NaN). Lengths arrive as per-sample integer tensors, never as dense masks. The
softmax is online (one pass over key blocks, running max and sum in float32) and the forward
stores the row log-sum-exp (base 2, of the scaled scores) for the backward.

Backward: program (b*H + h, key block) owns its keys, loops over the query blocks of its
sample and accumulates dK and dV in registers; no atomics, so two runs are bitwise equal. When
one key block holds all keys (``Lk <= max_fused_keys``: 256 for bf16/fp16 with a 64-wide head,
which covers the paper's Lv = 200 and Lq <= 30) the same program, one per (b, h), also writes dQ
(it sees every key of each query row); otherwise a second kernel computes dQ per query block.
delta = rowsum(dO * O) is computed from the dO and O tiles each program loads anyway, which
saves a launch and a [B, H, Lq] round trip.

Information gate (eq. 6), elementwise over ``[B, Lq, d]`` with padded rows set to zero::

    shared (paper: W^i = W^g):   out = sigmoid(x + b_g) * (x + b_i)
    separate projections:        out = sigmoid(g + b_g) * (i + b_i)

Numerics: every ``tl.dot`` accumulates in float32 with operands in the input dtype (bfloat16,
float16 or float32); probabilities and dS are cast to the input dtype before their dots, as in
FlashAttention. For float32 inputs ``input_precision`` picks exact float32 (``"ieee"``, FMA
units), TF32 tensor cores (``"tf32"``) or 3xTF32 (``"tf32x3"``, near-float32 on tensor cores);
it is a launcher argument (the interpreter tests use ``"ieee"``; ``fian_fast.ops.cga`` follows
torch's float32 matmul setting). Half-precision operands ignore it. Every dot dimension is
>= 16: the head dimension (at most ``MAX_HEAD_DIM`` = 256, :mod:`fian_fast._cga`) is padded to
``BLOCK_D = max(16, next_pow2(dk))``, and
tile sizes per dtype come from :func:`attention_config`. Batch offsets are int64.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from fian_fast._cga import INPUT_PRECISIONS, MAX_HEAD_DIM

__all__ = ["cga_attention_fwd", "cga_attention_bwd", "cga_gate_fwd", "cga_gate_bwd", "attention_config"]

_LOG2E = 1.4426950408889634


@triton.jit
def _cga_attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, qlen_ptr, klen_ptr,
    stride_qb, stride_ql, stride_qd, stride_kb, stride_kl, stride_kd,
    stride_vb, stride_vl, stride_vd, stride_ob, stride_ol, stride_od,
    Lq, H, HEAD_DIM, qk_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    # (b, h) on grid axis x: axes y and z stop at 65535 programs
    pid_bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)  # batch offsets in int64: no overflow past 2**31 elements
    h = pid_bh % H
    q_len = tl.load(qlen_ptr + b).to(tl.int32)
    k_len = tl.load(klen_ptr + b).to(tl.int32)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    row_ok = offs_m < q_len
    col = h * HEAD_DIM + offs_d

    q = tl.load(q_ptr + b * stride_qb + offs_m[:, None] * stride_ql + col[None, :] * stride_qd,
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    # rows past q_len are never computed: their loop runs zero times when the block is padding
    n_end = tl.where(pid_m * BLOCK_M < q_len, k_len, 0)
    for start_n in range(0, n_end, BLOCK_N):
        keys = start_n + offs_n
        key_ok = keys < k_len
        kv_mask = key_ok[:, None] & d_ok[None, :]
        k = tl.load(k_ptr + b * stride_kb + keys[:, None] * stride_kl + col[None, :] * stride_kd, mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + b * stride_vb + keys[:, None] * stride_vl + col[None, :] * stride_vd, mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # log2 units
        s = tl.where(key_ok[None, :], s, float("-inf"))
        # every block holds at least one valid key, so m_new is finite
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    has = row_ok & (l_i > 0.0)
    l_safe = tl.where(has, l_i, 1.0)
    out = tl.where(has[:, None], acc / l_safe[:, None], 0.0)
    lse = tl.where(has, m_i + tl.log2(l_safe), 0.0)
    tl.store(o_ptr + b * stride_ob + offs_m[:, None] * stride_ol + col[None, :] * stride_od,
             out.to(o_ptr.dtype.element_ty), mask=(offs_m[:, None] < Lq) & d_ok[None, :])
    tl.store(lse_ptr + pid_bh * Lq + offs_m, lse, mask=offs_m < Lq)


@triton.jit
def _cga_attn_bwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, do_ptr, lse_ptr, dq_ptr, dk_ptr, dv_ptr, qlen_ptr, klen_ptr,
    stride_qb, stride_ql, stride_qd, stride_kb, stride_kl, stride_kd,
    stride_vb, stride_vl, stride_vd, stride_ob, stride_ol, stride_od,
    stride_dob, stride_dol, stride_dod,
    Lq, Lk, H, HEAD_DIM, qk_scale, sm_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
    WRITE_DQ: tl.constexpr,
):
    """dK, dV of one key block (and dQ when WRITE_DQ: the block holds every key). dq/dk/dv are
    contiguous [B, L, H*HEAD_DIM]."""
    pid_bh = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)  # batch offsets in int64: no overflow past 2**31 elements
    h = pid_bh % H
    q_len = tl.load(qlen_ptr + b).to(tl.int32)
    k_len = tl.load(klen_ptr + b).to(tl.int32)
    D = H * HEAD_DIM

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    col = h * HEAD_DIM + offs_d
    key_ok = offs_n < k_len
    kv_mask = key_ok[:, None] & d_ok[None, :]
    k = tl.load(k_ptr + b * stride_kb + offs_n[:, None] * stride_kl + col[None, :] * stride_kd, mask=kv_mask, other=0.0)
    v = tl.load(v_ptr + b * stride_vb + offs_n[:, None] * stride_vl + col[None, :] * stride_vd, mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)

    m_end = tl.where(pid_n * BLOCK_N < k_len, q_len, 0)
    for start_m in range(0, m_end, BLOCK_M):
        offs_m = start_m + offs_m0
        row_ok = offs_m < q_len
        q_mask = row_ok[:, None] & d_ok[None, :]
        q = tl.load(q_ptr + b * stride_qb + offs_m[:, None] * stride_ql + col[None, :] * stride_qd, mask=q_mask, other=0.0)
        o = tl.load(o_ptr + b * stride_ob + offs_m[:, None] * stride_ol + col[None, :] * stride_od, mask=q_mask, other=0.0)
        do = tl.load(do_ptr + b * stride_dob + offs_m[:, None] * stride_dol + col[None, :] * stride_dod,
                     mask=q_mask, other=0.0)
        lse = tl.load(lse_ptr + pid_bh * Lq + offs_m, mask=row_ok, other=0.0)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        p = tl.where(row_ok[:, None] & key_ok[None, :], tl.exp2(s - lse[:, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PRECISION)
        if WRITE_DQ:
            dq = tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION) * sm_scale
            tl.store(dq_ptr + b * Lq * D + offs_m[:, None] * D + col[None, :], dq.to(dq_ptr.dtype.element_ty),
                     mask=(offs_m[:, None] < Lq) & d_ok[None, :])
    if WRITE_DQ:
        # rows the loop skipped (padding, or every row when the sample has no key) get zeros
        zero = tl.zeros([BLOCK_M, BLOCK_D], tl.float32).to(dq_ptr.dtype.element_ty)
        for start_m in range(tl.cdiv(m_end, BLOCK_M) * BLOCK_M, Lq, BLOCK_M):
            offs_m = start_m + offs_m0
            tl.store(dq_ptr + b * Lq * D + offs_m[:, None] * D + col[None, :], zero,
                     mask=(offs_m[:, None] < Lq) & d_ok[None, :])
    out_mask = (offs_n[:, None] < Lk) & d_ok[None, :]
    tl.store(dk_ptr + b * Lk * D + offs_n[:, None] * D + col[None, :], (dk * sm_scale).to(dk_ptr.dtype.element_ty),
             mask=out_mask)
    tl.store(dv_ptr + b * Lk * D + offs_n[:, None] * D + col[None, :], dv.to(dv_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _cga_attn_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, do_ptr, lse_ptr, dq_ptr, qlen_ptr, klen_ptr,
    stride_qb, stride_ql, stride_qd, stride_kb, stride_kl, stride_kd,
    stride_vb, stride_vl, stride_vd, stride_ob, stride_ol, stride_od,
    stride_dob, stride_dol, stride_dod,
    Lq, H, HEAD_DIM, qk_scale, sm_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """dQ of one query block when the keys span several blocks (second, deterministic pass)."""
    pid_bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)  # batch offsets in int64: no overflow past 2**31 elements
    h = pid_bh % H
    q_len = tl.load(qlen_ptr + b).to(tl.int32)
    k_len = tl.load(klen_ptr + b).to(tl.int32)
    D = H * HEAD_DIM

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    col = h * HEAD_DIM + offs_d
    row_ok = offs_m < q_len
    q_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(q_ptr + b * stride_qb + offs_m[:, None] * stride_ql + col[None, :] * stride_qd, mask=q_mask, other=0.0)
    o = tl.load(o_ptr + b * stride_ob + offs_m[:, None] * stride_ol + col[None, :] * stride_od, mask=q_mask, other=0.0)
    do = tl.load(do_ptr + b * stride_dob + offs_m[:, None] * stride_dol + col[None, :] * stride_dod,
                 mask=q_mask, other=0.0)
    lse = tl.load(lse_ptr + pid_bh * Lq + offs_m, mask=row_ok, other=0.0)
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    n_end = tl.where(pid_m * BLOCK_M < q_len, k_len, 0)
    for start_n in range(0, n_end, BLOCK_N):
        offs_n = start_n + offs_n0
        key_ok = offs_n < k_len
        kv_mask = key_ok[:, None] & d_ok[None, :]
        k = tl.load(k_ptr + b * stride_kb + offs_n[:, None] * stride_kl + col[None, :] * stride_kd, mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + b * stride_vb + offs_n[:, None] * stride_vl + col[None, :] * stride_vd, mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        p = tl.where(row_ok[:, None] & key_ok[None, :], tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)
    tl.store(dq_ptr + b * Lq * D + offs_m[:, None] * D + col[None, :], (dq * sm_scale).to(dq_ptr.dtype.element_ty),
             mask=(offs_m[:, None] < Lq) & d_ok[None, :])


@triton.jit
def _acc(x, FP64: tl.constexpr):
    """Arithmetic dtype of the gate: float32 for every input but float64 (kept exact for gradcheck)."""
    if FP64:
        return x.to(tl.float64)
    else:
        return x.to(tl.float32)


@triton.jit
def _cga_gate_fwd_kernel(
    x_ptr, i_ptr, bg_ptr, bi_ptr, out_ptr, qlen_ptr,
    stride_xb, stride_xl, stride_xd, stride_ib, stride_il, stride_id,
    Lq, D,
    SEPARATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, FP64: tl.constexpr,
):
    """out[b, l] = sigmoid(x + b_g) * (x + b_i) (or (i + b_i) when SEPARATE), 0 for l >= q_len.
    out is contiguous [B, Lq, D]; i_ptr is None unless SEPARATE."""
    b = tl.program_id(0).to(tl.int64)  # the batch on grid axis x: axes y and z stop at 65535 programs
    pid_m = tl.program_id(1)
    pid_d = tl.program_id(2)
    q_len = tl.load(qlen_ptr + b).to(tl.int32)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    ld_mask = (offs_m < q_len)[:, None] & d_ok[None, :]
    x = _acc(tl.load(x_ptr + b * stride_xb + offs_m[:, None] * stride_xl + offs_d[None, :] * stride_xd,
                     mask=ld_mask, other=0.0), FP64)
    bg = _acc(tl.load(bg_ptr + offs_d, mask=d_ok, other=0.0), FP64)
    bi = _acc(tl.load(bi_ptr + offs_d, mask=d_ok, other=0.0), FP64)
    if SEPARATE:
        info = _acc(tl.load(i_ptr + b * stride_ib + offs_m[:, None] * stride_il + offs_d[None, :] * stride_id,
                            mask=ld_mask, other=0.0), FP64)
    else:
        info = x
    gate = tl.sigmoid(x + bg[None, :])
    out = tl.where(ld_mask, gate * (info + bi[None, :]), 0.0)
    tl.store(out_ptr + b * Lq * D + offs_m[:, None] * D + offs_d[None, :], out.to(out_ptr.dtype.element_ty),
             mask=(offs_m < Lq)[:, None] & d_ok[None, :])


@triton.jit
def _cga_gate_bwd_kernel(
    dout_ptr, x_ptr, i_ptr, bg_ptr, bi_ptr, dx_ptr, di_ptr, dbg_part_ptr, dbi_part_ptr, qlen_ptr,
    stride_gb, stride_gl, stride_gd, stride_xb, stride_xl, stride_xd, stride_ib, stride_il, stride_id,
    Lq, D,
    SEPARATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, FP64: tl.constexpr,
):
    """Gradients of the gate. dx (and di when SEPARATE) are contiguous [B, Lq, D]; the bias
    gradients are written as per-program column sums [B * cdiv(Lq, BLOCK_M), D] that the caller
    reduces in a fixed order (deterministic, no atomics). Shared: dx = d_gate + d_info, and i_ptr
    and di_ptr are None (every output pointer is a distinct buffer)."""
    b = tl.program_id(0).to(tl.int64)  # the batch on grid axis x: axes y and z stop at 65535 programs
    pid_m = tl.program_id(1)
    pid_d = tl.program_id(2)
    q_len = tl.load(qlen_ptr + b).to(tl.int32)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    ld_mask = (offs_m < q_len)[:, None] & d_ok[None, :]
    g_out = _acc(tl.load(dout_ptr + b * stride_gb + offs_m[:, None] * stride_gl + offs_d[None, :] * stride_gd,
                         mask=ld_mask, other=0.0), FP64)
    x = _acc(tl.load(x_ptr + b * stride_xb + offs_m[:, None] * stride_xl + offs_d[None, :] * stride_xd,
                     mask=ld_mask, other=0.0), FP64)
    bg = _acc(tl.load(bg_ptr + offs_d, mask=d_ok, other=0.0), FP64)
    bi = _acc(tl.load(bi_ptr + offs_d, mask=d_ok, other=0.0), FP64)
    if SEPARATE:
        info = _acc(tl.load(i_ptr + b * stride_ib + offs_m[:, None] * stride_il + offs_d[None, :] * stride_id,
                            mask=ld_mask, other=0.0), FP64)
    else:
        info = x
    gate = tl.sigmoid(x + bg[None, :])
    d_info = tl.where(ld_mask, g_out * gate, 0.0)
    d_gate = tl.where(ld_mask, g_out * (info + bi[None, :]) * gate * (1.0 - gate), 0.0)
    st_mask = (offs_m < Lq)[:, None] & d_ok[None, :]
    st_off = b * Lq * D + offs_m[:, None] * D + offs_d[None, :]
    if SEPARATE:
        tl.store(dx_ptr + st_off, d_gate.to(dx_ptr.dtype.element_ty), mask=st_mask)
        tl.store(di_ptr + st_off, d_info.to(di_ptr.dtype.element_ty), mask=st_mask)
    else:
        tl.store(dx_ptr + st_off, (d_gate + d_info).to(dx_ptr.dtype.element_ty), mask=st_mask)
    part = (b * tl.num_programs(1) + pid_m) * D + offs_d
    tl.store(dbg_part_ptr + part, tl.sum(d_gate, axis=0), mask=d_ok)
    tl.store(dbi_part_ptr + part, tl.sum(d_info, axis=0), mask=d_ok)


def _on_device_of(t: torch.Tensor):
    """Triton launches on the current CUDA device, not on the tensors' one: make them agree."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _block(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def _precision(dtype: torch.dtype, input_precision: str) -> str:
    if input_precision not in INPUT_PRECISIONS:
        raise ValueError(f"cga kernels: input_precision should be one of {INPUT_PRECISIONS}, got {input_precision!r}")
    # only float32 operands have a choice; half types always use their native tensor-core path
    return input_precision if dtype == torch.float32 else "tf32"


# Tile limits for a 64-wide head, chosen from ahead-of-time sm_90 builds with triton 3.8 and 3.6
# (cuobjdump resource usage; tests/test_cga_kernels.py rebuilds them): every tile fits the 227 KiB
# of shared memory of an H100/H200 block and, with 8 warps, 255 registers without spilling, except
# the 256-key fused backward in half precision (a small spill, taken to keep dQ in the same pass
# at Lv = 200). Float32 dots need more registers (IEEE runs on FMA units; 3xTF32 keeps three
# operand copies), hence smaller tiles.
#   kind: (fwd max M, fwd max N, fused bwd max keys)
_TILES = {
    "half": (64, 128, 256),
    "tf32": (32, 64, 128),
    "tf32x3": (32, 64, 64),
    "ieee": (32, 64, 64),
}
_WARPS = 8


def attention_config(dtype: torch.dtype, input_precision: str, Lq: int, Lk: int, head_dim: int,
                     max_fused_keys=None) -> dict:
    """Tile sizes and warps of the three attention kernels for one call.

    Returns ``{"fwd": {...}, "bwd": {...}, "dq": {...} or None}``, each holding BLOCK_M, BLOCK_N,
    BLOCK_D, DOT_PRECISION, num_warps (and WRITE_DQ for "bwd"); "dq" is None when one key block
    holds every key (dQ written by the dK/dV program).
    """
    if head_dim > MAX_HEAD_DIM:
        raise ValueError(f"attention_config: head_dim should be at most {MAX_HEAD_DIM} (the widest tile), got {head_dim}")
    prec = _precision(dtype, input_precision)
    kind = "half" if dtype in (torch.float16, torch.bfloat16) else prec
    max_m, max_n, fused_keys = _TILES[kind]
    block_d = _block(head_dim, 16, MAX_HEAD_DIM)
    shrink = max(1, block_d // 64)  # wider heads: proportionally fewer rows and keys per tile
    max_n, fused_keys = max(16, max_n // shrink), max(16, fused_keys // shrink)
    if max_fused_keys is not None:
        fused_keys = max_fused_keys
    fwd_m = _block(Lq, 16, max(16, max_m // shrink))
    if kind == "half" and fwd_m > 32:
        max_n = min(max_n, 32)
    fwd = dict(BLOCK_M=fwd_m, BLOCK_N=_block(Lk, 16, max_n), BLOCK_D=block_d, DOT_PRECISION=prec, num_warps=_WARPS)
    fused = triton.next_power_of_2(max(Lk, 1)) <= fused_keys
    # IEEE float32 on 32-key tiles spills with Triton 3.6 (8 bytes); 64-key tiles fit both versions
    min_n = 64 // shrink if kind == "ieee" else 16
    bwd_n = _block(Lk, max(16, min(min_n, fused_keys)), fused_keys) if fused else max(16, 64 // shrink)
    bwd_m = (32 if bwd_n <= 128 else 16) if kind == "half" else 16
    bwd_m = _block(Lq, 16, max(16, bwd_m // shrink))
    bwd = dict(BLOCK_M=bwd_m, BLOCK_N=bwd_n, BLOCK_D=block_d, DOT_PRECISION=prec, num_warps=_WARPS, WRITE_DQ=fused)
    # the 3xTF32 dQ pass keeps three operand copies: 16 query rows fit 255 registers with Triton 3.6
    dq_m = 16 if kind == "tf32x3" else 32
    dq = None if fused else dict(BLOCK_M=_block(Lq, 16, max(16, dq_m // shrink)), BLOCK_N=bwd_n, BLOCK_D=block_d,
                                 DOT_PRECISION=prec, num_warps=_WARPS)
    return {"fwd": fwd, "bwd": bwd, "dq": dq}


def _strides(t: torch.Tensor):
    return t.stride(0), t.stride(1), t.stride(2)


def cga_attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, query_lengths: torch.Tensor,
                      key_lengths: torch.Tensor, num_heads: int, input_precision: str = "ieee", block_n=None):
    """Multi-head attention core of eq. 4 (the heads, before W^O).

    Args:
        q: Tensor[B, Lq, d] projected queries (any strides; head h owns columns h*dk:(h+1)*dk).
        k, v: Tensor[B, Lk, d] projected keys and values, dtype of ``q``.
        query_lengths, key_lengths: int Tensor[B] with values in [0, Lq] and [0, Lk].
        num_heads: H, with d % H == 0.
        input_precision: float32 dots as ``"ieee"`` (exact) or ``"tf32"``/``"tf32x3"``.
        block_n: keys per inner iteration (power of two >= 16); None picks it from Lk.
    Returns:
        heads: Tensor[B, Lq, d] contiguous, dtype of ``q``; zero at rows >= query_lengths[b] and
            for samples with key_lengths[b] == 0.
        lse: Tensor[B, H, Lq] float32, base-2 log-sum-exp of the scaled scores (0 at zero rows).
    """
    B, Lq, D = q.shape
    Lk = k.shape[1]
    head_dim = D // num_heads
    o = torch.empty((B, Lq, D), device=q.device, dtype=q.dtype)
    lse = torch.empty((B, num_heads, Lq), device=q.device, dtype=torch.float32)
    if B == 0 or Lq == 0:
        return o, lse
    cfg = attention_config(q.dtype, input_precision, Lq, Lk, head_dim)["fwd"]
    if block_n:
        cfg["BLOCK_N"] = block_n
    sm_scale = head_dim ** -0.5
    grid = (B * num_heads, triton.cdiv(Lq, cfg["BLOCK_M"]))
    with _on_device_of(q):
        _cga_attn_fwd_kernel[grid](
            q, k, v, o, lse, query_lengths, key_lengths,
            *_strides(q), *_strides(k), *_strides(v), *_strides(o),
            Lq, num_heads, head_dim, sm_scale * _LOG2E, **cfg)
    return o, lse


def cga_attention_bwd(grad_heads: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: torch.Tensor,
                      lse: torch.Tensor, query_lengths: torch.Tensor, key_lengths: torch.Tensor, num_heads: int,
                      input_precision: str = "ieee", max_fused_keys=None, block_n=None):
    """Gradients of :func:`cga_attention_fwd` w.r.t. q, k, v (deterministic, no atomics).

    Args:
        grad_heads: Tensor[B, Lq, d], gradient of ``heads`` (any strides), dtype of ``q``.
        q, k, v, heads, lse, lengths, num_heads, input_precision: as in / from the forward.
        max_fused_keys: key count up to which one program per (b, h) holds every key and writes
            dQ in the same pass (above it dQ is a second pass over query blocks); None takes the
            dtype's limit from :func:`attention_config` (256 keys for bf16/fp16 with a 64-wide head).
        block_n: keys per program in the two-pass case (power of two >= 16, default 64).
    Returns:
        (dq Tensor[B, Lq, d], dk Tensor[B, Lk, d], dv Tensor[B, Lk, d]), contiguous, dtype of q.
    """
    B, Lq, D = q.shape
    Lk = k.shape[1]
    head_dim = D // num_heads
    dq = torch.empty((B, Lq, D), device=q.device, dtype=q.dtype)
    dk = torch.empty((B, Lk, D), device=q.device, dtype=q.dtype)
    dv = torch.empty((B, Lk, D), device=q.device, dtype=q.dtype)
    if B == 0 or Lq == 0 or Lk == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    cfg = attention_config(q.dtype, input_precision, Lq, Lk, head_dim, max_fused_keys)
    bwd, dq_cfg = cfg["bwd"], cfg["dq"]
    if block_n and dq_cfg is not None:
        bwd["BLOCK_N"] = dq_cfg["BLOCK_N"] = block_n
    sm_scale = head_dim ** -0.5
    common = (*_strides(q), *_strides(k), *_strides(v), *_strides(heads), *_strides(grad_heads))
    with _on_device_of(q):
        _cga_attn_bwd_kernel[(B * num_heads, triton.cdiv(Lk, bwd["BLOCK_N"]))](
            q, k, v, heads, grad_heads, lse, dq, dk, dv, query_lengths, key_lengths, *common,
            Lq, Lk, num_heads, head_dim, sm_scale * _LOG2E, sm_scale, **bwd)
        if dq_cfg is not None:
            _cga_attn_bwd_dq_kernel[(B * num_heads, triton.cdiv(Lq, dq_cfg["BLOCK_M"]))](
                q, k, v, heads, grad_heads, lse, dq, query_lengths, key_lengths, *common,
                Lq, num_heads, head_dim, sm_scale * _LOG2E, sm_scale, **dq_cfg)
    return dq, dk, dv


_GATE_BLOCK_M = 16
_GATE_BLOCK_D = 128


def _info_strides(info):
    # the shared gate passes None for info (and for dinfo): the kernels, specialized on
    # SEPARATE=False, never touch those pointers, and no buffer is passed twice
    return _strides(info) if info is not None else (0, 0, 0)


def cga_gate_fwd(x: torch.Tensor, info, b_gate: torch.Tensor, b_info: torch.Tensor, query_lengths: torch.Tensor):
    """Information gate of eq. 6 as one elementwise pass.

    Args:
        x: Tensor[B, Lq, d] gate pre-activation W_q^g Q + W_v^g CMA(Q, V) (any strides); with
            ``info`` None it is also the information branch (the paper's shared W^i = W^g).
        info: Tensor[B, Lq, d] W_q^i Q + W_v^i CMA(Q, V), or None.
        b_gate, b_info: Tensor[d] biases b^g, b^i (any stride).
        query_lengths: int Tensor[B] in [0, Lq].
    Returns:
        Tensor[B, Lq, d] contiguous, dtype of ``x``: sigmoid(x + b_g) * (info + b_i), computed in
        float32 (float64 for float64), zero at rows >= query_lengths[b].
    """
    B, Lq, D = x.shape
    out = torch.empty((B, Lq, D), device=x.device, dtype=x.dtype)
    if out.numel() == 0:
        return out
    separate = info is not None
    b_gate, b_info = b_gate.contiguous(), b_info.contiguous()  # the kernel reads biases with unit stride
    grid = (B, triton.cdiv(Lq, _GATE_BLOCK_M), triton.cdiv(D, _GATE_BLOCK_D))
    with _on_device_of(x):
        _cga_gate_fwd_kernel[grid](
            x, info, b_gate, b_info, out, query_lengths, *_strides(x), *_info_strides(info), Lq, D,
            SEPARATE=separate, BLOCK_M=_GATE_BLOCK_M, BLOCK_D=_GATE_BLOCK_D, FP64=x.dtype == torch.float64,
            num_warps=4)
    return out


def cga_gate_bwd(grad_out: torch.Tensor, x: torch.Tensor, info, b_gate: torch.Tensor, b_info: torch.Tensor,
                 query_lengths: torch.Tensor):
    """Gradients of :func:`cga_gate_fwd`.

    Returns:
        (dx Tensor[B, Lq, d], dinfo Tensor[B, Lq, d] or None, db_gate Tensor[d], db_info Tensor[d]);
        dx/dinfo contiguous in the dtype of ``x``, bias gradients in the biases' dtype, summed in
        float32 in a fixed order. With ``info`` None, dx carries both branches.
    """
    B, Lq, D = x.shape
    separate = info is not None
    dx = torch.empty((B, Lq, D), device=x.device, dtype=x.dtype)
    di = torch.empty_like(dx) if separate else None
    n_m = triton.cdiv(Lq, _GATE_BLOCK_M) if Lq else 0
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    dbg_part = torch.empty((B * n_m, D), device=x.device, dtype=acc)
    dbi_part = torch.empty_like(dbg_part)
    if dx.numel():
        b_gate, b_info = b_gate.contiguous(), b_info.contiguous()
        grid = (B, n_m, triton.cdiv(D, _GATE_BLOCK_D))
        with _on_device_of(x):
            _cga_gate_bwd_kernel[grid](
                grad_out, x, info, b_gate, b_info, dx, di, dbg_part, dbi_part, query_lengths,
                *_strides(grad_out), *_strides(x), *_info_strides(info), Lq, D,
                SEPARATE=separate, BLOCK_M=_GATE_BLOCK_M, BLOCK_D=_GATE_BLOCK_D, FP64=x.dtype == torch.float64,
                num_warps=4)
    return dx, di, dbg_part.sum(0).to(b_gate.dtype), dbi_part.sum(0).to(b_info.dtype)
