"""CUDA at the paper's sizes (section 4.3), the checks that decide whether the GPU path can be
trusted before it is timed: window_score at ActivityNet's 7 scales with B = 128 and C = 512 (the
weight gradient reduced over batch chunks) against the float64 CPU kernel, and the TACoS B = 64
bf16 training step, eager without a host synchronization, then captured in a CUDA graph and
replayed, against eager steps.

The smaller CUDA cases of each op (every dtype, ties, odd shapes) live in the op's own test file.
"""
import pytest
import torch

from fian_fast import FIAN, FIANConfig, ops, reference
from fian_fast._extension import has_cuda_ops
from fian_fast.data.dataset import random_batch
from fian_fast.train_step import TrainStep, make_optimizer, pad_batch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA kernels")]


@pytest.fixture
def ieee_float32():
    """float32 matmuls and convolutions in IEEE float32 (no TF32), restored after."""
    matmul, conv = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, conv


def _max_error(got, want) -> float:
    return float((got.double().cpu() - want).abs().max())


def _forward_and_grads(fn, leaves, grad, sizes, strides):
    n = len(sizes)
    y = fn(leaves[0], leaves[1:1 + n], leaves[1 + n:], sizes, strides)
    return [y.detach(), *torch.autograd.grad(y, leaves, grad)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_window_score_activitynet_b128_c512_against_float64_cpu(dtype, ieee_float32):
    """Forward and every gradient within twice the error of the pure-PyTorch reference run in the
    same dtype on the same GPU, both measured against the CPU kernel in float64, plus one rounding
    of the sum of the absolute terms (the same sums over |inputs|: a sum of many terms with
    cancelling signs is held to its terms' size, not to its own)."""
    cfg = FIANConfig.preset("activitynet")
    B, T, C = 128, cfg.num_frames, 512
    sizes, strides = cfg.window_sizes, cfg.strides
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, C, dtype=torch.float64, generator=g)
    ws = [torch.randn(3, C, k, dtype=torch.float64, generator=g) / (C * k) ** 0.5 for k in sizes]
    bs = [torch.randn(3, dtype=torch.float64, generator=g) for _ in sizes]
    leaves = [t.requires_grad_() for t in [x, *ws, *bs]]
    want = ops.window_score(x, ws, bs, sizes, strides)
    grad = torch.randn(want.shape, dtype=torch.float64, generator=g)
    want = _forward_and_grads(ops.window_score, leaves, grad, sizes, strides)
    magnitude = _forward_and_grads(ops.window_score, [t.detach().abs().requires_grad_() for t in leaves],
                                   grad.abs(), sizes, strides)

    def run(fn):
        on_gpu = [t.detach().to("cuda", dtype).requires_grad_() for t in leaves]
        return _forward_and_grads(fn, on_gpu, grad.to("cuda", dtype), sizes, strides)

    got, same_precision = run(ops.window_score), run(reference.window_score)
    names = ["out", "dx"] + [f"dW[{k}]" for k in sizes] + [f"db[{k}]" for k in sizes]
    for name, a, r, w, m in zip(names, got, same_precision, want, magnitude):
        fused_error, reference_error = _max_error(a, w), _max_error(r, w)
        floor = torch.finfo(dtype).eps * float(m.max())
        assert fused_error <= 2 * reference_error + floor, (
            f"{name}: fused {dtype} error {fused_error:.3g} against float64, same-precision reference "
            f"{reference_error:.3g}, one rounding of the terms {floor:.3g}")


def _steps(cfg, mode, state, batches):
    """Losses of one step per batch and the parameters after them; the first step warms up."""
    model = FIAN(cfg, backend="fast").cuda()
    model.load_state_dict(state)
    step = TrainStep(model, make_optimizer(model, cfg.lr, cfg.weight_decay, mode), cfg.grad_clip, amp=True,
                     mode=mode, warmup=1)
    losses = [step(*batches[0]).total.clone()]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")     # from here on a host synchronization raises
    try:
        losses += [step(b, m).total.clone() for b, m in batches[1:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return torch.stack(losses), torch.cat([p.detach().flatten().float() for p in model.parameters()])


def test_tacos_b64_bf16_step_sync_free_and_graph_replay_matches_eager():
    """TACoS preset, B = 64, bf16 autocast, dropout off so that eager and graph steps draw nothing:
    four eager steps (three of them under ``set_sync_debug_mode("error")``) twice, and the same
    four batches through a CUDA graph (warm-up, capture, replays). The graph's losses and its
    parameters after the optimizer steps agree with eager as closely as two eager runs agree with
    each other (or within bf16's 1 % of the losses and 5 % of the parameters' total update)."""
    cfg = FIANConfig.preset("tacos", dropout=0.0)
    torch.manual_seed(0)
    model = FIAN(cfg)
    state = model.state_dict()
    initial = torch.cat([p.detach().flatten().float() for p in model.parameters()]).cuda()
    batches = []
    for seed in range(4):
        b, m = pad_batch(random_batch(cfg, cfg.batch_size, seed), cfg.batch_size, cfg.max_query_length)
        batches.append((b.to("cuda"), m.cuda()))
    eager_losses, eager_params = _steps(cfg, "eager", state, batches)
    again_losses, again_params = _steps(cfg, "eager", state, batches)
    graph_losses, graph_params = _steps(cfg, "cuda-graphs", state, batches)
    assert torch.isfinite(eager_losses).all()
    loss_tol = max(2 * float((again_losses - eager_losses).abs().max()), 1e-2 * float(eager_losses.abs().max()))
    assert float((graph_losses - eager_losses).abs().max()) <= loss_tol, (graph_losses, eager_losses)
    update = float((eager_params - initial).norm())
    assert update > 0
    param_tol = max(2 * float((again_params - eager_params).norm()), 0.05 * update)
    assert float((graph_params - eager_params).norm()) <= param_tol
