"""FIAN model timings: the reference model on the CPU, and a TACoS training step with the fused
ops (``backend="fast"``) against the pure-PyTorch reference on the same weights and batch."""
import pytest
import torch

from fian_fast import FIAN, FIANConfig
from profile_step import random_batch as _batch  # benchmarks/ is on sys.path under pytest


def _train_step(model, opt, batch):
    video, video_lengths, query, query_lengths, gt = batch

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.loss(model(video, video_lengths, query, query_lengths), gt).total
        loss.backward()
        opt.step()
        return loss

    return step


def test_reference_forward_backward_cpu(benchmark, run_info):
    torch.manual_seed(0)
    cfg = FIANConfig.preset("synthetic")
    model = FIAN(cfg).train()
    video, video_lengths, query, query_lengths, gt = _batch(cfg, 16, "cpu")

    def step():
        model.zero_grad(set_to_none=True)
        model.loss(model(video, video_lengths, query, query_lengths), gt).total.backward()

    benchmark.extra_info.update(run_info)
    benchmark.extra_info.update({"preset": "synthetic", "batch": 16, "backend": "reference", "device": "cpu"})
    benchmark(step)


@pytest.mark.cuda
def test_tacos_train_step_fast_vs_reference(benchmark, timeit, report_ratio):
    torch.manual_seed(0)
    cfg = FIANConfig.preset("tacos")
    device = "cuda"
    ref = FIAN(cfg, backend="reference").to(device).train()
    fast = FIAN(cfg, backend="fast").to(device).train()
    fast.load_state_dict(ref.state_dict())
    batch = _batch(cfg, cfg.batch_size, device)
    ref_step = _train_step(ref, torch.optim.Adam(ref.parameters(), lr=cfg.lr), batch)
    fast_step = _train_step(fast, torch.optim.Adam(fast.parameters(), lr=cfg.lr), batch)
    reference_s = timeit(ref_step, device)
    fast_s = timeit(fast_step, device)
    ratio = report_ratio(f"FIAN train step tacos B={cfg.batch_size}", device, reference_s, fast_s, benchmark)
    print(f"tacos train step: reference {reference_s * 1e3:.2f} ms, fast {fast_s * 1e3:.2f} ms, x{ratio:.2f}")
    benchmark.extra_info.update({"preset": "tacos", "batch": cfg.batch_size})
    benchmark(lambda: (fast_step(), torch.cuda.synchronize()))
