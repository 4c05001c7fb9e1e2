"""window_score forward + backward against one nn.Conv1d per scale (what a model would write).

CPU: TACoS (T = 200, windows [8, 16, 32, 64], stride k / 8) and ActivityNet (7 scales,
stride k / 4) at C = 512. GPU (marked cuda): ActivityNet's 7 scales, B = 128, float32 and
bfloat16, against cuDNN Conv1d per scale (float32: TF32 off on both sides).
"""
import pytest
import torch
from torch import nn

from fian_fast import ops
from fian_fast._extension import has_cuda_ops, has_ops
from fian_fast.config import FIANConfig

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")

C = 512


def _setup(preset, B, device, dtype):
    torch.manual_seed(0)
    cfg = FIANConfig.preset(preset)
    convs = nn.ModuleList(nn.Conv1d(C, 3, k, stride=s) for k, s in zip(cfg.window_sizes, cfg.strides))
    convs = convs.to(device=device, dtype=dtype)
    x = torch.randn(B, cfg.num_frames, C, device=device, dtype=dtype, requires_grad=True)

    def conv_per_scale():
        out = torch.cat([conv(x.transpose(1, 2)) for conv in convs], dim=2).transpose(1, 2)
        out.backward(torch.ones_like(out))

    def fused():
        out = ops.window_score(x, [c.weight for c in convs], [c.bias for c in convs], cfg.window_sizes, cfg.strides)
        out.backward(torch.ones_like(out))

    with torch.no_grad():
        a = torch.cat([conv(x.transpose(1, 2)) for conv in convs], dim=2).transpose(1, 2)
        b = ops.window_score(x, [c.weight for c in convs], [c.bias for c in convs], cfg.window_sizes, cfg.strides)
        tol = 1e-3 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(b.float(), a.float(), rtol=tol, atol=tol)
    return conv_per_scale, fused


@pytest.mark.parametrize("preset,B", [("tacos", 32), ("activitynet", 32)])
def test_bench_window_score_cpu(preset, B, benchmark, timeit, report_ratio):
    conv_per_scale, fused = _setup(preset, B, "cpu", torch.float32)
    ref_s = timeit(conv_per_scale, "cpu", warmup=1, repeat=5)
    fast_s = timeit(fused, "cpu", warmup=1, repeat=5)
    benchmark.pedantic(fused, rounds=3, iterations=1, warmup_rounds=1)
    ratio = report_ratio(f"window_score fwd+bwd {preset} B={B} C={C} (vs Conv1d/scale)", "cpu", ref_s, fast_s,
                         benchmark)
    print(f"\nwindow_score CPU {preset}: Conv1d per scale {ref_s * 1e3:.1f} ms, fian_fast {fast_s * 1e3:.1f} ms, "
          f"x{ratio:.2f}")
    assert ratio > 0


@pytest.fixture
def cudnn_tf32_off():
    """cuDNN convolutions in IEEE float32 (PyTorch's default lets them run as TF32), restored after."""
    allow = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = allow


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_bench_window_score_cuda(dtype, benchmark, timeit, report_ratio, cudnn_tf32_off):
    """Target: >= 1.5x cuDNN Conv1d per scale. The fp32 baseline runs cuDNN with TF32 off, as the
    fused kernel computes in IEEE float32 (exact fp32 timed against exact fp32)."""
    conv_per_scale, fused = _setup("activitynet", 128, "cuda", dtype)
    ref_s = timeit(conv_per_scale, "cuda", warmup=5, repeat=30)
    fast_s = timeit(fused, "cuda", warmup=5, repeat=30)
    benchmark.pedantic(fused, rounds=30, iterations=1, warmup_rounds=5)
    precision = " TF32 off" if dtype == torch.float32 else ""
    ratio = report_ratio(f"window_score fwd+bwd activitynet B=128 {dtype} (vs cuDNN{precision} Conv1d/scale)", "cuda",
                         ref_s, fast_s, benchmark)
    print(f"\nwindow_score CUDA {dtype}: cuDNN Conv1d per scale {ref_s * 1e3:.3f} ms, fian_fast {fast_s * 1e3:.3f} ms, "
          f"x{ratio:.2f}")
    assert ratio > 0
