"""FIAN model timings on the CPU: the reference model's forward + backward (the GPU training step,
fused against reference, is in test_bench_step.py)."""
import torch

from fian_fast import FIAN, FIANConfig
from fian_fast.data.dataset import random_batch


def test_reference_forward_backward_cpu(benchmark, run_info):
    torch.manual_seed(0)
    cfg = FIANConfig.preset("synthetic")
    model = FIAN(cfg).train()
    b = random_batch(cfg, 16)

    def step():
        model.zero_grad(set_to_none=True)
        model.loss(model(*b.model_inputs()), b.gt).total.backward()

    benchmark.extra_info.update(run_info)
    benchmark.extra_info.update({"preset": "synthetic", "batch": 16, "backend": "reference", "device": "cpu"})
    benchmark(step)
