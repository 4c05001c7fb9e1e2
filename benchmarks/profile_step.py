"""Where the time of one FIAN training step goes: ``torch.profiler`` over the trainer's own step
(:class:`fian_fast.train_step.TrainStep`, eager: the trusted path, forward, loss, backward,
gradient clipping and fused Adam) with the ``"fast"`` backend.

    python benchmarks/profile_step.py                       # CUDA: TACoS preset, B = 64, bf16 autocast
    python benchmarks/profile_step.py --device cpu          # CPU: synthetic preset, B = 4 (a dry run)

Prints the most expensive kernels (CUDA kernels; on the CPU, the innermost CPU ops), the number
of kernel launches per step, and the share of device time in each part of the model:

- ``gru``: the BiGRUs (query, video and localization encoders);
- ``cga``: the cross-modal guided attention blocks (eq. 4-6);
- ``localization``: the localization head (window scoring, section 3.4);
- ``loss``: labels and losses (eq. 15-18); ``optimizer``: Adam;
- ``other``: everything else (video self-attention, FFNs, integration, ...).

Forward work is attributed through ``record_function`` ranges that module hooks open around
each part; backward work through autograd's sequence numbers, which tie every backward node to
the forward op that made it.
"""
from __future__ import annotations

import argparse
import collections
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from fian_fast import FIAN, FIANConfig
from fian_fast.data.dataset import random_batch
from fian_fast.train_step import TrainStep, make_optimizer, pad_batch

PARTS = (("gru", ("GRU",)), ("cga", ("CGA", "CMA", "SoftAttention")),
         ("localization", ("Localization", "TGNHead", "CMINHead")))
PREFIX = "fian::"


def _part_of(module) -> str | None:
    name = type(module).__name__
    for part, keys in PARTS:
        if any(k in name for k in keys):
            return part
    return None


def annotate(model: torch.nn.Module) -> None:
    """Open a ``fian::<part>`` profiler range around the forward of every module of a part."""
    for module in model.modules():
        part = _part_of(module)
        if part is None:
            continue
        ranges = []

        def pre(mod, args, part=part, ranges=ranges):
            ranges.append(record_function(PREFIX + part))
            ranges[-1].__enter__()

        def post(mod, args, out, ranges=ranges):
            ranges.pop().__exit__(None, None, None)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def annotate_step(model, optimizer) -> None:
    """``fian::loss`` around ``model.loss`` and ``fian::optimizer`` around the optimizer's step
    (gradient clipping, between the two, counts as ``other``)."""
    loss = model.loss

    def annotated_loss(*args, **kwargs):
        with record_function(PREFIX + "loss"):
            return loss(*args, **kwargs)

    model.loss = annotated_loss
    ranges = []

    def pre(opt, args, kwargs):
        ranges.append(record_function(PREFIX + "optimizer"))
        ranges[-1].__enter__()

    def post(opt, args, kwargs):
        ranges.pop().__exit__(None, None, None)

    optimizer.register_step_pre_hook(pre)
    optimizer.register_step_post_hook(post)


def make_step(cfg, batch_size: int, device: str, amp: bool, mode: str = "eager"):
    """The trainer's own step (:class:`fian_fast.train_step.TrainStep`: trusted path, fused Adam,
    gradient clipping, bf16 autocast when ``amp``) on a fixed-shape random batch; returns a
    zero-argument callable running one step."""
    model = FIAN(cfg, backend="fast").to(device).train()
    annotate(model)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, mode)
    annotate_step(model, optimizer)
    step = TrainStep(model, optimizer, cfg.grad_clip, amp=amp, mode=mode)
    batch, mask = pad_batch(random_batch(cfg, batch_size), batch_size, cfg.max_query_length)
    batch, mask = batch.to(device), mask.to(device)
    return lambda: step(batch, mask)


def _ancestors(evt):
    while evt is not None:
        yield evt
        evt = evt.cpu_parent


def attribute(events, device: str):
    """(part -> device µs, kernel name -> [calls, µs], launches) over the profiled events."""
    def annotated(evt):
        for a in _ancestors(evt):
            if a.name.startswith(PREFIX):
                return a.name[len(PREFIX):]
        return None

    # forward op -> part, keyed by autograd sequence number (backward nodes carry the same one)
    by_seq = {}
    for e in events:
        if e.sequence_nr >= 0 and not e.name.startswith("autograd::engine"):
            part = annotated(e)
            if part is not None:
                by_seq.setdefault(e.sequence_nr, part)

    def part_of(evt):
        part = annotated(evt)
        if part is not None:
            return part
        for a in _ancestors(evt):
            if a.name.startswith("autograd::engine::evaluate_function") and a.sequence_nr in by_seq:
                return by_seq[a.sequence_nr]
        return "other"

    parts = collections.Counter()
    kernels = collections.defaultdict(lambda: [0, 0.0])
    launches = 0
    for e in events:
        if e.device_type != torch.autograd.DeviceType.CPU:
            continue
        if device == "cuda":
            work = [(k.name, k.duration) for k in e.kernels
                    if not k.name.lower().startswith(("memcpy", "memset"))]
        elif not e.cpu_children and not e.name.startswith(PREFIX):
            work = [(e.name, e.self_cpu_time_total)]
        else:
            work = []
        if not work:
            continue
        part = part_of(e)
        for name, us in work:
            parts[part] += us
            kernels[name][0] += 1
            kernels[name][1] += us
            launches += 1
    return parts, kernels, launches


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default=None, help="default: tacos on CUDA, synthetic on the CPU")
    ap.add_argument("--batch", type=int, default=None, help="default: 64 on CUDA, 4 on the CPU")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default=None,
                    help="default: bf16 autocast on CUDA, fp32 on the CPU (autocast is CUDA's only)")
    ap.add_argument("--steps", type=int, default=3, help="profiled steps (after 3 warm-up steps)")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    preset = args.preset or ("tacos" if cuda else "synthetic")
    B = args.batch or (64 if cuda else 4)
    amp = (args.dtype or ("bf16" if cuda else "fp32")) == "bf16"
    if amp and not cuda:
        ap.error(f"--dtype bf16 needs a CUDA device (the step's autocast is CUDA's), got --device {args.device}")
    torch.manual_seed(0)
    cfg = FIANConfig.preset(preset)
    step = make_step(cfg, B, args.device, amp=amp)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    wall_ms = (time.perf_counter() - t0) / args.steps * 1e3
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        sync()
    parts, kernels, launches = attribute(prof.events(), "cuda" if cuda else "cpu")
    total = sum(parts.values()) or 1.0
    n = args.steps
    where = torch.cuda.get_device_name() if cuda else "CPU"
    unit = "CUDA kernels" if cuda else "innermost CPU ops"
    print(f"profile: FIAN fast training step, {preset} preset, B = {B}, "
          f"{'bf16 autocast' if amp else 'fp32'}, {where}, torch {torch.__version__}")
    print(f"step wall time {wall_ms:.2f} ms (unprofiled, mean of {n}); {unit} per step: {launches / n:.0f}; "
          f"their time per step: {total / n / 1e3:.2f} ms")
    print(f"\nshare of {unit} time by part:")
    for part in ("gru", "cga", "localization", "loss", "optimizer", "other"):
        print(f"  {part:<13} {parts[part] / n / 1e3:9.3f} ms  {100 * parts[part] / total:5.1f} %")
    print(f"\ntop {args.top} {unit} by time per step:")
    top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:args.top]
    for name, (calls, us) in top:
        print(f"  {us / n / 1e3:9.3f} ms  {100 * us / total:5.1f} %  x{calls / n:<5.0f} {name[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
