"""CGA (eq. 4-6): the fused Triton path (``fian_fast.ops.cga`` on CUDA) against the eager
reference (``fian_fast.reference.cga``) and ``torch.compile`` of it (default mode), same inputs.

Paper sizes: B = 64, Lv = 200 frames, Lq = 20 words (lengths random in [5, 20]; video lengths
random in [100, 200]), d = 512, 8 heads. Both directions of the iterative attention: words
attend to video (Lq = 20 queries, 200 keys) and video attends to words (200 queries, 20 keys).
Forward is timed under ``torch.no_grad``; forward+backward computes the gradients of every input
and weight with ``torch.autograd.grad``.

Throughput in ``extra_info`` uses model counts at the padded sizes, the same for every path:
FLOPs of the unfused maths (six d x d projections per row as the reference does them, plus
QK^T and PV), backward = 2x forward; bytes = inputs + weights + output once (x3 with backward).
"""
import math

import pytest
import torch

from fian_fast.ops import cga
from fian_fast.reference.cga import cga as cga_reference

B, LV, LQ, D, HEADS = 64, 200, 20, 512, 8
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
_COMPILED = {}


def _inputs(direction, dtype, requires_grad):
    g = torch.Generator().manual_seed(0)
    words = torch.randn(B, LQ, D, generator=g)
    video = torch.randn(B, LV, D, generator=g)
    word_len = torch.randint(5, LQ + 1, (B,), generator=g)
    video_len = torch.randint(LV // 2, LV + 1, (B,), generator=g)
    weights = [torch.randn(D, D, generator=g) / math.sqrt(D) for _ in range(6)]
    biases = [torch.randn(D, generator=g) * 0.1 for _ in range(2)]
    if direction == "words-attend-video":
        query, key_value, ql, kl = words, video, word_len, video_len
    else:
        query, key_value, ql, kl = video, words, video_len, word_len
    floats = [t.to("cuda", dtype).requires_grad_(requires_grad) for t in [query, key_value] + weights + biases]
    return floats, ql.cuda(), kl.cuda()


def _model_counts(direction, dtype, backward):
    lq, lk = (LQ, LV) if direction == "words-attend-video" else (LV, LQ)
    flops = 2 * B * D * D * (4 * lq + 2 * lk) + 4 * B * lq * lk * D
    elem = torch.finfo(dtype).bits // 8
    nbytes = elem * (2 * B * lq * D + B * lk * D + 6 * D * D + 2 * D)
    return (3 if backward else 1) * flops, (3 if backward else 1) * nbytes


def _runner(fn, floats, ql, kl, backward):
    def call():
        return fn(floats[0], floats[1], ql, kl, *floats[2:8], floats[8], floats[9], HEADS)

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
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("direction", ["words-attend-video", "video-attends-words"])
def test_bench_cga(benchmark, timeit, report_ratio, direction, backward, dtype_name):
    dtype = DTYPES[dtype_name]
    floats, ql, kl = _inputs(direction, dtype, requires_grad=backward)
    fused = _runner(cga, floats, ql, kl, backward)
    eager = _runner(cga_reference, floats, ql, kl, backward)
    compiled = _runner(_compiled(backward), floats, ql, kl, backward)

    # the fused path agrees with the reference on these inputs before it is timed
    out_fused = _runner(cga, floats, ql, kl, False)()
    out_ref = _runner(cga_reference, [t.detach().double() for t in floats], ql, kl, False)()
    tol = 0.05 if dtype == torch.bfloat16 else 1e-3
    assert (out_fused.double() - out_ref).abs().max().item() <= tol * out_ref.abs().max().item()

    t_fused = timeit(fused, "cuda", warmup=5, repeat=30)
    t_eager = timeit(eager, "cuda", warmup=3, repeat=30)
    t_compiled = timeit(compiled, "cuda", warmup=3, repeat=30)
    name = f"cga {direction} {'fwd+bwd' if backward else 'fwd'} {dtype_name}"
    report_ratio(f"{name} vs eager", "cuda", t_eager, t_fused, benchmark)
    ratio_compiled = report_ratio(f"{name} vs compile", "cuda", t_compiled, t_fused)

    flops, nbytes = _model_counts(direction, dtype, backward)
    for label, t in (("fused", t_fused), ("eager", t_eager), ("compiled", t_compiled)):
        benchmark.extra_info[f"{label}_ms"] = round(t * 1e3, 4)
        benchmark.extra_info[f"{label}_tflops"] = round(flops / t / 1e12, 2)
        benchmark.extra_info[f"{label}_gbps"] = round(nbytes / t / 1e9, 1)
    benchmark.extra_info["speedup_vs_compile"] = round(ratio_compiled, 3)
    benchmark.extra_info["float32_matmul_precision"] = torch.get_float32_matmul_precision()

    def synced():
        fused()
        torch.cuda.synchronize()

    benchmark.pedantic(synced, rounds=30, iterations=1, warmup_rounds=3)
