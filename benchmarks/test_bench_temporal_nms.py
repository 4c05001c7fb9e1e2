"""``temporal_nms`` on its own: ``fian_fast.ops.temporal_nms`` against its pure-PyTorch reference
(``fian_fast.reference.temporal_nms``) and, where torchvision is installed,
``torchvision.ops.batched_nms`` on the same segments mapped to boxes ``(start, 0, end, 1)`` (a
box of height 1 has the segment's IoU), one batch index per sample.

TACoS-like batch: B = 128 samples x 347 candidates (the TACoS preset's windows), IoU threshold
0.5, top_k = 5 kept per sample. torchvision keeps every survivor (no top_k), so it does more
work after the fifth kept segment; the reference stops at top_k like the op. Inputs are trusted
(``validate=False``), as inside an evaluation loop.
"""
import pytest
import torch

from fian_fast import ops, reference
from fian_fast._extension import has_cuda_ops, has_ops
from fian_fast.config import FIANConfig

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")

B, THRESHOLD, TOP_K = 128, 0.5, 5

try:
    from torchvision.ops import batched_nms
except Exception:  # torchvision missing, or built for another torch
    batched_nms = None


def _inputs(device):
    torch.manual_seed(0)
    cfg = FIANConfig.preset("tacos")
    cand = reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides)
    N = cand.shape[0]
    segments = (cand[None] + torch.randn(B, N, 2) * 2).sort(dim=-1).values
    scores = torch.rand(B, N)
    return segments.to(device), scores.to(device)


def _torchvision(segments, scores):
    Bn, N = scores.shape
    s, e = segments[..., 0].reshape(-1), segments[..., 1].reshape(-1)
    boxes = torch.stack([s, torch.zeros_like(s), e, torch.ones_like(s)], dim=1)
    idxs = torch.arange(Bn, device=scores.device).repeat_interleave(N)
    return batched_nms(boxes, scores.reshape(-1), idxs, THRESHOLD)


def _check_agreement(segments, scores, kept):
    ref = reference.temporal_nms(segments.cpu(), scores.cpu(), THRESHOLD, TOP_K)
    assert torch.equal(kept.cpu(), ref)
    if batched_nms is not None:
        flat = _torchvision(segments, scores).cpu()
        N = scores.shape[1]
        for b in (0, 63, B - 1):
            mine = flat[(flat // N) == b] % N  # already in descending score order
            assert mine[:TOP_K].tolist() == ref[b][ref[b] >= 0].tolist()


def _bench(device, benchmark, timeit, report_ratio):
    segments, scores = _inputs(device)

    def fused():
        return ops.temporal_nms(segments, scores, THRESHOLD, TOP_K, validate=False)

    _check_agreement(segments, scores, fused())
    fast_s = timeit(fused, device, warmup=5, repeat=50)
    ref_s = timeit(lambda: reference.temporal_nms(segments, scores, THRESHOLD, TOP_K), device, warmup=1, repeat=5)
    ratio = report_ratio(f"temporal_nms B={B} N={scores.shape[1]} (vs reference)", device, ref_s, fast_s, benchmark)
    line = f"\ntemporal_nms {device}: reference {ref_s * 1e3:.3f} ms, fian_fast {fast_s * 1e3:.3f} ms (x{ratio:.1f})"
    if batched_nms is not None:
        # on the CPU one call takes most of a second (a single NMS over all B x N boxes)
        tv_s = timeit(lambda: _torchvision(segments, scores), device, **({"warmup": 3, "repeat": 30} if device == "cuda"
                                                                        else {"warmup": 0, "repeat": 3}))
        tv_ratio = report_ratio(f"temporal_nms B={B} N={scores.shape[1]} (vs torchvision)", device, tv_s, fast_s)
        benchmark.extra_info["speedup_vs_torchvision_batched_nms"] = round(tv_ratio, 3)
        line += f", torchvision.ops.batched_nms {tv_s * 1e3:.3f} ms (x{tv_ratio:.1f})"
    print(line)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    benchmark.pedantic(lambda: (fused(), sync()), rounds=30, iterations=1, warmup_rounds=3)


def test_bench_temporal_nms_cpu(benchmark, timeit, report_ratio):
    _bench("cpu", benchmark, timeit, report_ratio)


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
def test_bench_temporal_nms_cuda(benchmark, timeit, report_ratio):
    _bench("cuda", benchmark, timeit, report_ratio)
