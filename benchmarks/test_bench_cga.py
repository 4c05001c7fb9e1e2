"""CGA (eq. 4-6): the fused Triton path (``fian_fast.ops.cga`` on CUDA) against PyTorch on the
same inputs, in the same run.

Baselines:
- ``eager-upcast``: the reference (``fian_fast.reference.cga``), which computes in float32 whatever
  the input dtype: for bfloat16 the ratio then mixes kernel speed with the cost of the dtype.
- ``eager-same``: plain PyTorch in the input dtype, as a user would write CGA — projections by
  ``nn.Linear``-style matmuls, ``F.scaled_dot_product_attention`` with the key mask, the gate —
  so that the ratio measures the kernels, not the dtype.
- ``compile``: ``torch.compile`` of the reference (default mode), only for the cases that carry
  a target (bfloat16 forward+backward at TACoS shapes: >= 1.3x); compiling costs tens of seconds,
  so ``FIAN_FAST_BENCH_COMPILE=0`` leaves it out.

Shapes (B = 64, d = 512, word lengths random in [5, Lq], video lengths in [Lv/2, Lv]):
- ``tacos``: Lv = 200 frames, Lq = 20 words, 8 heads (d_k = 64);
- ``charades``: Lv = 64 frames, Lq = 20 words, 4 heads (d_k = 128), the Charades-STA preset.
Both directions of the iterative attention: words attend to video (Lq queries, Lv keys) and video
attends to words (Lv queries, Lq keys). Forward is timed under ``torch.no_grad``; forward+backward
computes the gradients of every input and weight with ``torch.autograd.grad``.

Throughput in ``extra_info`` uses model counts at the padded sizes, the same for every path:
FLOPs of the unfused maths (six d x d projections per row as the reference does them, plus
QK^T and PV), backward = 2x forward; bytes = inputs + weights + output once (x3 with backward).
"""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from fian_fast.ops import CGAWeights, cga
from fian_fast.reference.cga import cga as cga_reference

B, D = 64, 512
SHAPES = {"tacos": dict(LV=200, LQ=20, HEADS=8), "charades": dict(LV=64, LQ=20, HEADS=4)}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
# (shape, dtype, pass) -> the speed targets of the fused path; compile baselines only for these
TARGETS = {("tacos", "bf16", "fwdbwd"): {"eager-upcast": 3.0, "compile": 1.3}}
_COMPILED = {}


def _inputs(shape, direction, dtype, requires_grad):
    s = SHAPES[shape]
    g = torch.Generator().manual_seed(0)
    words = torch.randn(B, s["LQ"], D, generator=g)
    video = torch.randn(B, s["LV"], D, generator=g)
    word_len = torch.randint(5, s["LQ"] + 1, (B,), generator=g)
    video_len = torch.randint(s["LV"] // 2, s["LV"] + 1, (B,), generator=g)
    weights = [torch.randn(D, D, generator=g) / math.sqrt(D) for _ in range(6)]
    biases = [torch.randn(D, generator=g) * 0.1 for _ in range(2)]
    if direction == "words-attend-video":
        query, key_value, ql, kl = words, video, word_len, video_len
    else:
        query, key_value, ql, kl = video, words, video_len, word_len
    floats = [t.to("cuda", dtype).requires_grad_(requires_grad) for t in [query, key_value] + weights + biases]
    return floats, ql.cuda(), kl.cuda()


def cga_same_precision(query, key_value, query_lengths, key_lengths, weights, num_heads):
    """Plain PyTorch CGA (shared gate, eq. 4-6) computed in the input dtype; rows with no key are
    not special-cased (every benchmark sample has keys)."""
    w_q, w_k, w_v, w_o, w_gate_q, w_gate_v, b_gate, b_info = weights[:8]
    Bq, Lq, d = query.shape
    Lk = key_value.shape[1]
    dk = d // num_heads
    q = (query @ w_q.t()).view(Bq, Lq, num_heads, dk).transpose(1, 2)
    k = (key_value @ w_k.t()).view(Bq, Lk, num_heads, dk).transpose(1, 2)
    v = (key_value @ w_v.t()).view(Bq, Lk, num_heads, dk).transpose(1, 2)
    key_ok = torch.arange(Lk, device=query.device)[None, :] < key_lengths[:, None]
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=key_ok[:, None, None, :])
    attended = heads.transpose(1, 2).reshape(Bq, Lq, d) @ w_o.t()
    x = query @ w_gate_q.t() + attended @ w_gate_v.t()
    out = torch.sigmoid(x + b_gate) * (x + b_info)
    row_ok = torch.arange(Lq, device=query.device)[None, :] < query_lengths[:, None]
    return out * row_ok[..., None].to(out.dtype)


def _model_counts(shape, direction, dtype, backward):
    s = SHAPES[shape]
    lq, lk = (s["LQ"], s["LV"]) if direction == "words-attend-video" else (s["LV"], s["LQ"])
    flops = 2 * B * D * D * (4 * lq + 2 * lk) + 4 * B * lq * lk * D
    elem = torch.finfo(dtype).bits // 8
    nbytes = elem * (2 * B * lq * D + B * lk * D + 6 * D * D + 2 * D)
    return (3 if backward else 1) * flops, (3 if backward else 1) * nbytes


def _runner(fn, floats, ql, kl, heads, backward):
    def call():
        return fn(floats[0], floats[1], ql, kl, CGAWeights(*floats[2:10]), heads)

    if not backward:
        def forward():
            with torch.no_grad():
                return call()
        return forward
    grad = torch.randn(floats[0].shape, device="cuda", dtype=floats[0].dtype)

    def forward_backward():
        return torch.autograd.grad(call(), floats, grad)
    return forward_backward


def _compiled(backward):
    # one compiled function per pass; shapes and dtypes recompile inside it as needed
    if backward not in _COMPILED:
        _COMPILED[backward] = torch.compile(cga_reference)
    return _COMPILED[backward]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("pass_name", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("direction", ["words-attend-video", "video-attends-words"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_bench_cga(benchmark, timeit, report_ratio, shape, direction, pass_name, dtype_name):
    dtype, backward, heads = DTYPES[dtype_name], pass_name == "fwdbwd", SHAPES[shape]["HEADS"]
    floats, ql, kl = _inputs(shape, direction, dtype, requires_grad=backward)
    paths = {"fused": cga, "eager-upcast": cga_reference, "eager-same": cga_same_precision}
    targets = TARGETS.get((shape, dtype_name, pass_name), {})
    if "compile" in targets and os.environ.get("FIAN_FAST_BENCH_COMPILE", "1") != "0":
        paths["compile"] = _compiled(backward)

    # every path agrees with the float64 reference on these inputs before it is timed
    out_ref = _runner(cga_reference, [t.detach().double() for t in floats], ql, kl, heads, False)()
    tol = 0.05 if dtype == torch.bfloat16 else 1e-3
    for label, fn in paths.items():
        out = _runner(fn, floats, ql, kl, heads, False)()
        err = (out.double() - out_ref).abs().max().item()
        assert err <= tol * out_ref.abs().max().item(), f"{label}: max error {err:.3e}"

    times = {label: timeit(_runner(fn, floats, ql, kl, heads, backward), "cuda", warmup=5, repeat=30)
             for label, fn in paths.items()}
    name = f"cga {shape} {direction} {pass_name} {dtype_name}"
    flops, nbytes = _model_counts(shape, direction, dtype, backward)
    for label, t in times.items():
        benchmark.extra_info[f"{label}_ms"] = round(t * 1e3, 4)
        benchmark.extra_info[f"{label}_tflops"] = round(flops / t / 1e12, 2)
        benchmark.extra_info[f"{label}_gbps"] = round(nbytes / t / 1e9, 1)
        if label != "fused":
            ratio = report_ratio(f"{name} vs {label}", "cuda", t, times["fused"],
                                 benchmark if label == "eager-upcast" else None)
            benchmark.extra_info[f"speedup_vs_{label}"] = round(ratio, 3)
            if label in targets:
                benchmark.extra_info[f"target_vs_{label}"] = targets[label]
    benchmark.extra_info["float32_matmul_precision"] = torch.get_float32_matmul_precision()

    fused = _runner(cga, floats, ql, kl, heads, backward)

    def synced():
        fused()
        torch.cuda.synchronize()

    benchmark.pedantic(synced, rounds=20, iterations=1, warmup_rounds=3)
