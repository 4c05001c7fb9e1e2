"""``--compile`` on the CPU: compile time per preset, the compiled training step against the eager
one, and what the opaque BiGRU op's recomputing backward costs.

Per preset (synthetic 32 frames, charades 64, tacos 200, activitynet 200; batch 2, fast backend,
one thread as in the trainer's CPU figures): the trainer's compiled forward + loss
(:class:`fian_fast.train_step.TrainStep` with ``mode="compile"``: ``torch.compile(fullgraph=True)``,
inductor) followed by the backward, against the same step eager, on the same inputs in the same
run. Compile time = first call minus a warm call, in a fresh inductor cache (every kernel
generated and built: what a first run costs) and once more after ``torch._dynamo.reset()`` with
that cache filled (what the next run of the same configuration costs). Inductor keeps its
precompiled header outside that cache (built once per machine and compiler flags), so the very
first compile on a machine costs about 10 s more than the figure here. The BiGRUs are single
nodes of the graph (:func:`fian_fast.ops.bigru`), so the compile time should not grow with the
frames: the last test prints tacos' compile time over synthetic's.

``test_bench_bigru_cpu`` times the BiGRU op's forward + backward against the same two ``_VF.gru``
calls differentiated by autograd (what the model ran before the op), and the backward alone in
its two kernels, the CPU's (from the saved output) and CUDA's (recomputing the forward, run here on
the CPU to show what the recomputation costs), against autograd's backward alone.
"""
import time

import pytest
import torch

from fian_fast import FIAN, FIANConfig
from fian_fast.data.dataset import random_batch
from fian_fast.ops import BiGRUWeights, bigru
from fian_fast.ops.bigru import _bigru as two_vf_gru_calls
from fian_fast.ops.bigru import _recomputing_backward
from fian_fast.train_step import TrainStep, make_optimizer, pad_batch

PRESETS = ["synthetic", "charades", "tacos", "activitynet"]
_COMPILE_S = {}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_inductor_cache():
    """Empty inductor caches, on disk and in memory (a kernel built for an earlier preset of the
    same shapes would otherwise be reused), and no dynamo state."""
    from torch._inductor.utils import fresh_cache

    torch._dynamo.reset()
    with fresh_cache():
        yield
    torch._dynamo.reset()


def _interleaved_medians(fns, repeat: int = 5):
    """Median seconds per call of each of ``fns``, their calls interleaved so that a change of the
    machine's load hits all of them alike (one warm-up call each first)."""
    import statistics

    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, row in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            row.append(time.perf_counter() - t0)
    return [statistics.median(row) for row in times]


def _training_step(model, forward_loss, inputs):
    """forward + loss + backward, gradients cleared first (the optimizer step is left out)."""
    def run():
        model.zero_grad(set_to_none=True)
        losses = forward_loss(*inputs)
        losses.total.backward()
        return losses
    return run


def _first_call_s(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@pytest.mark.parametrize("preset", PRESETS)
def test_bench_compile_step_cpu(benchmark, timeit, report_ratio, run_info, one_thread, fresh_inductor_cache, preset):
    cfg = FIANConfig.preset(preset)
    torch.manual_seed(0)
    model = FIAN(cfg, backend="fast")
    b, mask = pad_batch(random_batch(cfg, 2), 2, cfg.max_query_length)
    inputs = (b.video, b.video_lengths, b.query, b.query_lengths, b.gt, mask)

    def compiled_step():
        step = TrainStep(model, make_optimizer(model, cfg.lr, cfg.weight_decay), cfg.grad_clip, mode="compile")
        return _training_step(model, step._forward_loss, inputs)

    compiled = compiled_step()
    first_s = _first_call_s(compiled)
    warm_s = timeit(compiled, "cpu", warmup=1, repeat=5)
    compile_s = first_s - warm_s
    torch._dynamo.reset()
    compiled = compiled_step()
    cached_compile_s = _first_call_s(compiled) - warm_s
    eager = _training_step(model, TrainStep(model, make_optimizer(model, cfg.lr, cfg.weight_decay),
                                            cfg.grad_clip)._eager_forward_loss, inputs)
    # the two differ by a few per cent at most where matmuls and the BiGRUs dominate (tacos,
    # activitynet): many interleaved calls, so that the machine's drift hits both alike
    eager_s, compiled_s = _interleaved_medians([eager, compiled], repeat=15)
    report_ratio(f"train step {preset} B=2 forward+loss+backward: compiled vs eager", "cpu", eager_s, compiled_s,
                 benchmark)
    _COMPILE_S[preset] = compile_s
    benchmark.extra_info.update(run_info)
    benchmark.extra_info.update({"preset": preset, "frames": cfg.num_frames, "batch": 2, "threads": 1,
                                 "compile_s": round(compile_s, 2), "compile_with_filled_cache_s": round(cached_compile_s, 2),
                                 "eager_step_ms": eager_s * 1e3, "compiled_step_ms": compiled_s * 1e3})
    print(f"\n{preset} ({cfg.num_frames} frames): compile {compile_s:.1f} s (fresh inductor cache), "
          f"{cached_compile_s:.1f} s (filled cache); step eager {eager_s * 1e3:.1f} ms, compiled "
          f"{compiled_s * 1e3:.1f} ms (x{eager_s / compiled_s:.2f})", flush=True)
    benchmark.pedantic(compiled, rounds=3, iterations=1, warmup_rounds=0)


def test_bench_compile_time_does_not_grow_with_the_frames(benchmark, run_info):
    """tacos (200 frames) compile time over synthetic's (32), both measured above in this run."""
    if "synthetic" not in _COMPILE_S or "tacos" not in _COMPILE_S:
        pytest.skip("needs the synthetic and tacos compile benchmarks of this run")
    ratio = _COMPILE_S["tacos"] / _COMPILE_S["synthetic"]
    benchmark.extra_info.update(run_info)
    benchmark.extra_info.update({"device": "cpu", "compile_s": {k: round(v, 2) for k, v in _COMPILE_S.items()},
                                 "tacos_over_synthetic": round(ratio, 3), "target": 1.5})
    print("\ncompile time (fresh inductor cache): " + ", ".join(f"{k} {v:.1f} s" for k, v in _COMPILE_S.items())
          + f"; tacos / synthetic = {ratio:.2f}", flush=True)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


# ---------------------------------------------------------------------------- the BiGRU op
@pytest.mark.parametrize("B,L,C,d", [(4, 200, 512, 512), (4, 30, 300, 512)], ids=["tacos-video", "tacos-query"])
def test_bench_bigru_cpu(benchmark, report_ratio, run_info, one_thread, B, L, C, d):
    """The op (forward without autograd, backward recomputing it) against the two ``_VF.gru``
    calls under autograd; B x L x C input, d = 2H output features (TACoS's encoders)."""
    g = torch.Generator().manual_seed(0)
    H = d // 2
    x = torch.randn(B, L, C, generator=g, requires_grad=True)
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    lengths[0] = L
    shapes = [(3 * H, C), (3 * H, H), (3 * H,), (3 * H,)] * 2
    w = BiGRUWeights(*((torch.rand(s, generator=g) - 0.5).requires_grad_() for s in shapes))
    grad = torch.randn(B, L, d, generator=g)

    def op_forward_backward():
        bigru(x, lengths, w, validate=False).backward(grad)

    def autograd_forward_backward():
        two_vf_gru_calls(x, lengths, w, train=True).backward(grad)

    def autograd_forward():
        return two_vf_gru_calls(x, lengths, w, train=True)

    out = bigru(x, lengths, w, validate=False).detach()
    detached = [t.detach() for t in w]

    def op_backward():
        torch.ops.fian_fast.bigru_backward(grad, x.detach(), lengths, out, detached)

    def recomputing_backward():
        _recomputing_backward(grad, x.detach(), lengths, detached)

    op_s, autograd_s, autograd_forward_s, op_backward_s, recomputing_s = _interleaved_medians(
        [op_forward_backward, autograd_forward_backward, autograd_forward, op_backward, recomputing_backward])
    autograd_backward_s = autograd_s - autograd_forward_s
    shape = f"B={B} L={L} C={C} d={d}"
    report_ratio(f"bigru {shape} forward+backward: op vs _VF.gru autograd", "cpu", autograd_s, op_s, benchmark)
    report_ratio(f"bigru {shape} backward alone: op's CPU kernel vs _VF.gru autograd", "cpu", autograd_backward_s,
                 op_backward_s)
    report_ratio(f"bigru {shape} backward alone: recomputing kernel (CUDA's) vs _VF.gru autograd", "cpu",
                 autograd_backward_s, recomputing_s)
    benchmark.extra_info.update({"op_forward_backward_ms": op_s * 1e3, "autograd_forward_backward_ms": autograd_s * 1e3,
                                 "op_backward_ms": op_backward_s * 1e3, "autograd_backward_ms": autograd_backward_s * 1e3,
                                 "recomputing_backward_ms": recomputing_s * 1e3})
    benchmark.pedantic(op_forward_backward, rounds=3, iterations=1, warmup_rounds=0)
