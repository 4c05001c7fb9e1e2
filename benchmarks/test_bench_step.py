"""The training step: host reads and aten ops per step (CPU, countable), and on a GPU the TACoS
B = 64 bf16 step of the fast backend — eager, replayed from a CUDA graph, compiled — each against
the reference backend's eager step.

Host reads are counted with :func:`fian_fast._host_reads.count_host_reads` (calls of
``aten._local_scalar_dense`` plus Python ``.cpu()`` / ``.tolist()`` / ``.numpy()``) over the
trainer's step (:class:`fian_fast.train_step.TrainStep`: forward, loss, backward, clipping, fused
Adam) and over the same step through the validating public API (``validate=True``), which is
what a step cost before values were checked where they enter.
"""
import pytest
import torch

from fian_fast import FIAN, FIANConfig
from fian_fast._host_reads import count_host_reads
from fian_fast.data.dataset import random_batch
from fian_fast.train_step import TrainStep, make_optimizer, pad_batch


def _public_api_step(model, optimizer, grad_clip):
    """The step through the validating public API (what the trainer ran before the trusted path)."""
    def step(b):
        losses = model.loss(model(*b.model_inputs()), b.gt)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return losses
    return step


@pytest.mark.parametrize("preset", ["tacos", "charades", "synthetic"])
def test_bench_host_reads_per_step_cpu(benchmark, run_info, preset):
    cfg = FIANConfig.preset(preset)
    b = random_batch(cfg, 2)
    rows = {}
    for backend in ("reference", "fast"):
        torch.manual_seed(0)
        model = FIAN(cfg, backend=backend)
        optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
        for label, step in (("trusted", TrainStep(model, optimizer, cfg.grad_clip)),
                            ("validated", _public_api_step(model, optimizer, cfg.grad_clip))):
            step(b)   # Adam's state exists from here on
            with count_host_reads() as reads:
                step(b)
            rows[f"{backend}-{label}"] = reads
    benchmark.extra_info.update(run_info)
    benchmark.extra_info.update({"device": "cpu", "preset": preset, "batch": 2})
    for key, r in rows.items():
        benchmark.extra_info[key] = {"host_reads": r.total, "scalar_reads": r.scalar_reads, "copies": r.copies,
                                     "aten_ops": r.ops}
        print(f"\n{preset} {key:<20} host reads {r.total:3d} ({r.scalar_reads} scalar, {r.copies} copies), "
              f"aten ops {r.ops}")
    model = FIAN(cfg, backend="fast")
    step = TrainStep(model, make_optimizer(model, cfg.lr, cfg.weight_decay), cfg.grad_clip)
    benchmark.pedantic(lambda: step(b), rounds=3, iterations=1, warmup_rounds=1)
    assert rows["fast-trusted"].total == 0 and rows["reference-trusted"].total == 0


# ------------------------------------------------------------------------------------------ GPU
def _gpu_step(cfg, backend, mode, state, b, mask):
    model = FIAN(cfg, backend=backend).cuda()
    model.load_state_dict(state)
    step = TrainStep(model, make_optimizer(model, cfg.lr, cfg.weight_decay, mode), cfg.grad_clip, amp=True,
                     mode=mode)
    for _ in range(4):       # compile / warm-up and capture happen here
        step(b, mask)
    return lambda: step(b, mask)


_REFERENCE_S = {}


def _tacos_b64():
    cfg = FIANConfig.preset("tacos")
    torch.manual_seed(0)
    state = FIAN(cfg).state_dict()
    b, mask = pad_batch(random_batch(cfg, cfg.batch_size), cfg.batch_size, cfg.max_query_length)
    return cfg, state, b.to("cuda"), mask.cuda()


def _reference_eager_s(timeit) -> float:
    """The reference backend's eager step, timed once per run and shared by every mode's ratio."""
    if "tacos" not in _REFERENCE_S:
        cfg, state, b, mask = _tacos_b64()
        reference = _gpu_step(cfg, "reference", "eager", state, b, mask)
        _REFERENCE_S["tacos"] = timeit(reference, "cuda", warmup=2, repeat=10)
    return _REFERENCE_S["tacos"]


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["eager", "cuda-graphs", "compile"])
def test_bench_train_step_tacos_b64_bf16_cuda(benchmark, timeit, report_ratio, mode):
    """TACoS preset, B = 64, bf16 autocast, one fixed-shape batch: the fast backend's step in one
    mode (eager; replayed from a CUDA graph, target >= 3x; forward + loss compiled, fullgraph)
    against the reference backend's eager step, same weights, same batch, same run. Each mode is
    its own test, so a time limit that cuts the slow compile keeps the others' figures."""
    reference_s = _reference_eager_s(timeit)
    cfg, state, b, mask = _tacos_b64()
    fn = _gpu_step(cfg, "fast", mode, state, b, mask)
    fast_s = timeit(fn, "cuda", warmup=2, repeat=20)
    report_ratio(f"train step tacos B=64 bf16: fast {mode} vs reference eager", "cuda", reference_s, fast_s,
                 benchmark)
    benchmark.extra_info.update({"preset": "tacos", "batch": 64, "dtype": "bf16", "mode": mode,
                                 "target_speedup": 3.0 if mode == "cuda-graphs" else None,
                                 "reference_eager_ms": reference_s * 1e3, "fast_ms": fast_s * 1e3})
    benchmark.pedantic(lambda: (fn(), torch.cuda.synchronize()), rounds=10, iterations=1, warmup_rounds=1)
