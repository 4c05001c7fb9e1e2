"""Training of FIAN (paper section 4.3: Adam, the preset's learning rate and batch size).

:func:`train` runs epochs over a :class:`~fian_fast.data.GroundingDataset` with gradient clipping
(``cfg.grad_clip``), bf16 autocast on CUDA, tqdm progress bars and a JSON-lines log
(``RUN_DIR/log.jsonl``). Checkpoints are written atomically (temporary file + ``os.replace``) to
``RUN_DIR/last.pt`` every ``checkpoint_every`` steps and at the end of every epoch, and to
``RUN_DIR/best.pt`` when the validation metric improves. Validation runs at the end of every
epoch and when ``max_steps`` stops a run inside an epoch. ``best.pt`` holds what prediction
needs: the weights, the config and the vocabulary (the words of the run's queries and their
vectors, not the whole GloVe table), plus the epoch, step and metrics. ``last.pt`` adds the
optimizer, the position inside the epoch and the random states (CPU, and the CUDA generator of
the training device), so ``resume=True`` continues exactly where ``last.pt`` left off, dropout
included: an interrupt or a crash loses at most the steps since the last checkpoint. Data
loaders draw their worker seeds from their own generators, so that loading and validation leave
the global random state to the model. Without a validation split, ``best.pt`` holds the last
weights.

Many GPUs: launched by ``torchrun``, the model is wrapped in DistributedDataParallel and each
process reads its shard of the same per-epoch permutation (the ``DistributedSampler`` rule);
``batch_size`` is the global batch, split evenly over the processes. Rank 0 evaluates and writes
checkpoints.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from .config import FIANConfig
from .data.dataset import GroundingDataset, collate
from .data.text import Vocabulary
from .distributed import DistInfo, barrier, broadcast_object
from .data.windows import evaluate_windows
from .evaluate import DEFAULT_PROTOCOL
from .train_step import MODES as STEP_MODES
from .train_step import TrainStep, make_optimizer, pad_batch

__all__ = ["TrainOptions", "train", "save_checkpoint", "load_checkpoint", "load_model", "set_seed"]

#: Config fields that may differ between a checkpoint and a resumed run.
RESUMABLE_CHANGES = {"epochs"}


@dataclass
class TrainOptions:
    """Run settings (``None`` takes the config's value)."""

    out_dir: str
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    device: str = "cpu"
    backend: str = "reference"
    seed: int = 0
    resume: bool = False
    checkpoint_every: int = 200
    protocol: str = DEFAULT_PROTOCOL
    thresholds: Sequence[float] = (0.3, 0.5, 0.7)
    select_metric: str = "R1@0.5"
    num_workers: int = 0
    progress: bool = True
    max_steps: Optional[int] = None
    amp: bool = True
    #: ``eager``, ``compile`` (forward + loss under torch.compile, fullgraph) or ``cuda-graphs``
    #: (the whole step replayed from a CUDA graph; batches padded to one shape), see train_step.py
    step_mode: str = "eager"
    dataset: str = "synthetic"
    log_every: int = 20
    extra: dict = field(default_factory=dict)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str, state: dict) -> None:
    """``torch.save`` to ``path + ".tmp"`` then ``os.replace``: a reader never sees half a file."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> dict:
    """Read a checkpoint written by :func:`train`; ``ValueError`` for a missing or corrupt file."""
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a damaged file
        raise ValueError(f"checkpoint {path} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    need = {"model", "config", "vocab", "epoch", "step"}
    if not isinstance(state, dict) or not need <= set(state):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint {path}: expected keys {sorted(need)}, got {got}")
    return state


def config_from_checkpoint(state: dict, path: str = "checkpoint") -> FIANConfig:
    try:
        return FIANConfig.from_dict(state["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: config does not load ({e})") from None


def load_model(path: str, device: str = "cpu", backend: Optional[str] = None):
    """``(model in eval mode, cfg, vocabulary, checkpoint dict)`` from a checkpoint."""
    from . import FIAN

    state = load_checkpoint(path)
    cfg = config_from_checkpoint(state, path)
    model = FIAN(cfg, backend=backend or state.get("backend", "reference"))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(f"checkpoint {path} does not match its config's model: {' '.join(first[:2])[:300]}") from None
    vocab = Vocabulary.from_state_dict(state["vocab"])
    return model.to(device).eval(), cfg, vocab, state


def check_resumable(state: dict, cfg: FIANConfig, path: str) -> None:
    """A checkpoint may resume this run only if its config equals ``cfg`` (``epochs`` aside)."""
    # fields added to FIANConfig after a checkpoint was written take their defaults there
    saved = {**FIANConfig().to_dict(), **state["config"]}
    now = cfg.to_dict()
    diff = [k for k in sorted(set(saved) | set(now)) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)]
    if diff:
        k = diff[0]
        raise ValueError(f"checkpoint {path} comes from another config: {k} is {saved.get(k)!r} there and "
                         f"{now.get(k)!r} here ({len(diff)} field(s) differ: {', '.join(diff)})")


class ResumableSampler(Sampler):
    """The ``DistributedSampler`` permutation of epoch ``e`` (seed + e) for one rank, starting at
    batch ``start_batch`` of that epoch so that a resumed run sees exactly the remaining batches."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.inner = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.batch_size = batch_size
        self.start = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.start = start_batch * self.batch_size

    def batches_per_epoch(self) -> int:
        return -(-len(self.inner) // self.batch_size)

    def __iter__(self):
        return iter(list(self.inner)[self.start:])

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.start)


def _log(path: Optional[str], record: dict) -> None:
    if path is not None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def train(cfg: FIANConfig, train_ds: GroundingDataset, val_ds: Optional[GroundingDataset], opts: TrainOptions,
          dist_info: Optional[DistInfo] = None, on_step: Optional[Callable[[int], None]] = None) -> dict:
    """Train a FIAN model; returns ``{"steps", "epochs", "seconds", "best", "last", "checkpoint", "model"}``.

    Args:
        cfg: model config (its ``lr``, ``batch_size``, ``epochs``, ``grad_clip`` unless overridden
            in ``opts``).
        train_ds, val_ds: datasets; the best checkpoint is chosen on ``val_ds`` by
            ``opts.select_metric`` under ``opts.protocol`` (ties: mIoU).
        opts: :class:`TrainOptions`.
        dist_info: process group info from :func:`fian_fast.distributed.init_distributed`.
        on_step: called with the global step after every optimizer step (tests inject failures here).
    """
    from torch.nn.parallel import DistributedDataParallel

    from . import FIAN

    info = dist_info or DistInfo(device=opts.device)
    device = torch.device(info.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but no CUDA GPU is visible; use --device cpu")
    epochs = opts.epochs or cfg.epochs
    global_batch = opts.batch_size or cfg.batch_size
    if global_batch % info.world_size:
        raise ValueError(f"batch size {global_batch} should be divisible by the number of processes {info.world_size}")
    batch = global_batch // info.world_size
    lr = opts.lr if opts.lr is not None else cfg.lr
    os.makedirs(opts.out_dir, exist_ok=True)
    last_path = os.path.join(opts.out_dir, "last.pt")
    best_path = os.path.join(opts.out_dir, "best.pt")
    log_path = os.path.join(opts.out_dir, "log.jsonl") if info.is_main else None

    set_seed(opts.seed)
    model = FIAN(cfg, backend=opts.backend).to(device)
    if opts.step_mode not in STEP_MODES:
        raise ValueError(f"step_mode should be one of {STEP_MODES}, got {opts.step_mode!r}")
    if opts.step_mode == "cuda-graphs" and (device.type != "cuda" or info.enabled):
        raise ValueError(f"step mode cuda-graphs needs one CUDA device and one process, got device {device} and "
                         f"{info.world_size} process(es)")
    optimizer = make_optimizer(model, lr, cfg.weight_decay, opts.step_mode)
    epoch, step, start_batch, best = 0, 0, 0, None
    if opts.resume:
        if not os.path.isfile(last_path):
            raise ValueError(f"--resume: no checkpoint to resume from at {last_path}")
        state = load_checkpoint(last_path)
        check_resumable(state, cfg, last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, step, start_batch, best = state["epoch"], state["step"], state.get("batch_in_epoch", 0), state.get("best")
        if "rng" in state:
            torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        _log(log_path, {"event": "resume", "epoch": epoch, "step": step, "batch_in_epoch": start_batch})
    ddp = DistributedDataParallel(model) if info.enabled else model
    sampler = ResumableSampler(len(train_ds), batch, opts.seed, info.rank, info.world_size)
    # Own generators: each DataLoader iterator draws a worker base seed, from the global generator
    # unless given one, and a resumed run would then see other dropout masks.
    loader = DataLoader(train_ds, batch_size=batch, sampler=sampler, collate_fn=collate, num_workers=opts.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        generator=torch.Generator().manual_seed(opts.seed))
    val_loader = None
    if val_ds is not None and info.is_main:
        val_loader = DataLoader(val_ds, batch_size=max(batch, 64), shuffle=False, collate_fn=collate,
                                num_workers=opts.num_workers, generator=torch.Generator().manual_seed(opts.seed))
    amp = opts.amp and device.type == "cuda"
    train_step = TrainStep(model, optimizer, cfg.grad_clip, amp, opts.step_mode, module=ddp)
    fixed_shapes = opts.step_mode != "eager"   # one graph: one shape (pad_batch), never a recompile
    per_epoch = sampler.batches_per_epoch()

    def snapshot(epoch_now: int, batch_now: int, full: bool = True) -> dict:
        """``full``: the ``last.pt`` state (resumable); otherwise the ``best.pt`` state."""
        state = {"model": model.state_dict(), "config": cfg.to_dict(), "vocab": train_ds.vocab.state_dict(),
                 "epoch": epoch_now, "step": step, "best": best, "dataset": opts.dataset, "backend": opts.backend,
                 "protocol": opts.protocol, **opts.extra}
        if full:
            state.update(optimizer=optimizer.state_dict(), batch_in_epoch=batch_now, rng=torch.get_rng_state(),
                         cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
        return state

    def validate(epoch_now: int, batch_now: int) -> None:
        """Main process: evaluate on ``val_ds``, log, write ``last.pt`` and, if better, ``best.pt``."""
        nonlocal best, last_metrics
        if val_loader is not None:
            res = evaluate_windows(model, val_ds, val_loader, (opts.protocol,), opts.thresholds, device, amp,
                                   dataset_name=opts.dataset)[opts.protocol]
            last_metrics = res.metrics
            key = (last_metrics.get(opts.select_metric, 0.0), last_metrics["mIoU"])
            improved = best is None or key > tuple(best["key"])
            if improved:
                best = {"key": list(key), "epoch": epoch_now, "step": step, "metrics": last_metrics}
            _log(log_path, {"event": "eval", "epoch": epoch_now, "step": step, "protocol": opts.protocol,
                            "metrics": last_metrics, "best": improved, "seconds": round(time.time() - t0, 2)})
            if opts.progress:
                print(f"epoch {epoch_now}/{epochs} step {step}: val {res.summary()}" + ("  (best)" if improved else ""),
                      flush=True)
            if improved:
                save_checkpoint(best_path, snapshot(epoch_now, batch_now, full=False))
        save_checkpoint(last_path, snapshot(epoch_now, batch_now))

    if info.is_main:
        _log(log_path, {"event": "start", "config": cfg.to_dict(), "epochs": epochs, "batch_size": global_batch,
                        "lr": lr, "device": str(device), "backend": opts.backend, "world_size": info.world_size,
                        "train_queries": len(train_ds), "val_queries": len(val_ds) if val_ds is not None else 0})
    t0 = time.time()
    last_metrics = None
    stop = False
    from tqdm import tqdm

    while epoch < epochs and not stop:
        model.train()
        sampler.set_epoch(epoch, start_batch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", total=per_epoch, initial=start_batch,
                   disable=None if (opts.progress and info.is_main) else True, leave=False, dynamic_ncols=True)
        batch_no = start_batch
        for b in bar:
            # the loader checked the batch's values (collate): the step reads nothing back
            mask = None
            if fixed_shapes:
                b, mask = pad_batch(b, batch, cfg.max_query_length)
                mask = mask.to(device, non_blocking=True)
            losses = train_step(b.to(device, non_blocking=True), mask)
            step += 1
            batch_no += 1
            if info.is_main and step % opts.log_every == 0:
                bar.set_postfix(loss=f"{losses.total.item():.4f}")
                _log(log_path, {"event": "step", "epoch": epoch, "step": step, "loss": losses.total.item(),
                                "alignment": losses.alignment.item(), "boundary": losses.boundary.item(),
                                "seconds": round(time.time() - t0, 2)})
            if step % opts.checkpoint_every == 0 and batch_no < per_epoch:
                if info.is_main:
                    save_checkpoint(last_path, snapshot(epoch, batch_no))
                barrier(info)
            if on_step is not None:
                on_step(step)
            if opts.max_steps is not None and step >= opts.max_steps:
                stop = True
                break
        bar.close()
        if stop and batch_no < per_epoch:
            if info.is_main:
                validate(epoch, batch_no)
            barrier(info)
            break
        epoch += 1
        start_batch = 0
        if info.is_main:
            validate(epoch, 0)
        barrier(info)
    if info.is_main and val_loader is None:
        save_checkpoint(best_path, snapshot(epoch, start_batch, full=False))
    summary = {"steps": step, "epochs": epoch, "seconds": round(time.time() - t0, 2), "best": best,
               "last": last_metrics, "checkpoint": best_path}
    if info.is_main:
        _log(log_path, {"event": "end", **summary})
    summary = broadcast_object(info, summary)
    summary["model"] = model  # this process's trained module (not part of the broadcast)
    return summary
