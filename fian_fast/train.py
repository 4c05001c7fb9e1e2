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

The run is a :class:`Trainer`, in the steps of a fit loop: setup (model, optimizer,
:func:`resume_run`, :func:`make_loaders`), the fit loop, the epoch loop (one
:class:`~fian_fast.train_step.TrainStep` per batch), and after each epoch or a stop the
validation (:func:`val_result`) and checkpoint hook. ``step_mode`` follows the one rule of
:func:`fian_fast.train_step.check_mode`, checked before any work; ``cuda-graphs`` also needs one
CUDA device and one process.

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
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from .config import FIANConfig
from .data.dataset import GroundingDataset, collate
from .data.text import Vocabulary
from .distributed import DistInfo, barrier, broadcast_object
from .evaluate import DEFAULT_PROTOCOL, evaluate_model
from .train_step import TrainStep, check_mode, make_optimizer, pad_batch

__all__ = ["TrainOptions", "Trainer", "Progress", "train", "save_checkpoint", "load_checkpoint", "load_model",
           "set_seed"]

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


@dataclass
class Progress:
    """Where a run stands; ``last.pt`` stores it and a resumed run starts from it."""

    epoch: int = 0                 #: epochs completed
    step: int = 0                  #: optimizer steps taken
    batch: int = 0                 #: batches done in epoch ``epoch`` (``batch_in_epoch`` in ``last.pt``)
    best: Optional[dict] = None    #: ``{"key", "epoch", "step", "metrics"}`` of the best validation


def resume_run(path: str, cfg: FIANConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               device: torch.device) -> Progress:
    """Load ``last.pt`` at ``path`` into ``model`` and ``optimizer`` and restore the random states
    (CPU, and the CUDA generator of ``device``); returns the position to continue from."""
    if not os.path.isfile(path):
        raise ValueError(f"--resume: no checkpoint to resume from at {path}")
    state = load_checkpoint(path)
    check_resumable(state, cfg, path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        torch.set_rng_state(state["rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return Progress(state["epoch"], state["step"], state.get("batch_in_epoch", 0), state.get("best"))


def make_loaders(train_ds: GroundingDataset, val_ds: Optional[GroundingDataset], batch: int, opts: TrainOptions,
                 info: DistInfo, device: torch.device) -> Tuple[ResumableSampler, DataLoader, Optional[DataLoader]]:
    """``(sampler, train loader, val loader)``: this process's shard of each epoch's permutation in
    batches of ``batch``; the val loader (main process only, else ``None``) in dataset order."""
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
    return sampler, loader, val_loader


def val_result(model, val_ds: GroundingDataset, val_loader: DataLoader, opts: TrainOptions, device: torch.device,
               amp: bool):
    """The validation split scored under ``opts.protocol`` (an ``EvalResult``: ``metrics``, ``summary()``)."""
    return evaluate_model(model, val_loader, (opts.protocol,), opts.thresholds, device, amp, dataset=opts.dataset,
                          windows="each")[opts.protocol]


class Trainer:
    """One training run, in the steps of a fit loop: :meth:`setup` (model, optimizer, resume,
    loaders), :meth:`fit` (epochs until ``epochs`` or ``max_steps``), :meth:`train_epoch` (the
    batches of one epoch, one :class:`~fian_fast.train_step.TrainStep` each),
    :meth:`end_of_segment` (after an epoch or a stop: validation and checkpoints, main process)
    and :meth:`checkpoint_state` (what ``last.pt`` and ``best.pt`` hold). Arguments as
    :func:`train`; the run's position is :attr:`progress`.
    """

    def __init__(self, cfg: FIANConfig, train_ds: GroundingDataset, val_ds: Optional[GroundingDataset],
                 opts: TrainOptions, dist_info: Optional[DistInfo] = None,
                 on_step: Optional[Callable[[int], None]] = None) -> None:
        self.cfg, self.train_ds, self.val_ds, self.opts, self.on_step = cfg, train_ds, val_ds, opts, on_step
        self.info = info = dist_info or DistInfo(device=opts.device)
        self.device = device = torch.device(info.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda requested but no CUDA GPU is visible; use --device cpu")
        self.epochs = opts.epochs or cfg.epochs
        self.global_batch = opts.batch_size or cfg.batch_size
        if self.global_batch % info.world_size:
            raise ValueError(f"batch size {self.global_batch} should be divisible by the number of processes "
                             f"{info.world_size}")
        self.batch = self.global_batch // info.world_size
        self.lr = opts.lr if opts.lr is not None else cfg.lr
        check_mode("train", opts.step_mode, "step_mode")   # the step's own rule, named as TrainOptions names it
        if opts.step_mode == "cuda-graphs" and (device.type != "cuda" or info.enabled):
            raise ValueError(f"step mode cuda-graphs needs one CUDA device and one process, got device {device} and "
                             f"{info.world_size} process(es)")
        self.amp = opts.amp and device.type == "cuda"
        self.last_path = os.path.join(opts.out_dir, "last.pt")
        self.best_path = os.path.join(opts.out_dir, "best.pt")
        self.log_path = os.path.join(opts.out_dir, "log.jsonl") if info.is_main else None
        self.progress = Progress()
        self.last_metrics: Optional[dict] = None
        self.t0 = time.time()

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Seed, model, optimizer, ``last.pt`` when resuming, train step, then the loaders (they
        touch no global random state)."""
        from torch.nn.parallel import DistributedDataParallel

        from . import FIAN

        cfg, opts, device = self.cfg, self.opts, self.device
        os.makedirs(opts.out_dir, exist_ok=True)
        set_seed(opts.seed)
        self.model = FIAN(cfg, backend=opts.backend).to(device)
        self.optimizer = make_optimizer(self.model, self.lr, cfg.weight_decay, opts.step_mode)
        if opts.resume:
            self.progress = resume_run(self.last_path, cfg, self.model, self.optimizer, device)
            p = self.progress
            _log(self.log_path, {"event": "resume", "epoch": p.epoch, "step": p.step, "batch_in_epoch": p.batch})
        module = DistributedDataParallel(self.model) if self.info.enabled else self.model
        self.train_step = TrainStep(self.model, self.optimizer, cfg.grad_clip, self.amp, opts.step_mode, module=module)
        self.fixed_shapes = opts.step_mode != "eager"   # one graph: one shape (pad_batch), never a recompile
        self.sampler, self.loader, self.val_loader = make_loaders(self.train_ds, self.val_ds, self.batch, opts,
                                                                  self.info, device)
        self.per_epoch = self.sampler.batches_per_epoch()

    # --------------------------------------------------------------- fit loop
    def fit(self) -> dict:
        """Run to ``epochs`` (or ``max_steps``); returns :func:`train`'s summary."""
        self.setup()
        info, p = self.info, self.progress
        if info.is_main:
            _log(self.log_path, {"event": "start", "config": self.cfg.to_dict(), "epochs": self.epochs,
                                 "batch_size": self.global_batch, "lr": self.lr, "device": str(self.device),
                                 "backend": self.opts.backend, "world_size": info.world_size,
                                 "train_queries": len(self.train_ds),
                                 "val_queries": len(self.val_ds) if self.val_ds is not None else 0})
        self.t0 = time.time()
        while p.epoch < self.epochs:
            stopped = self.train_epoch()
            if not stopped or p.batch >= self.per_epoch:   # the epoch is complete
                p.epoch, p.batch = p.epoch + 1, 0
            self.end_of_segment()
            if stopped:
                break
        if info.is_main and self.val_loader is None:
            save_checkpoint(self.best_path, self.checkpoint_state(full=False))
        summary = {"steps": p.step, "epochs": p.epoch, "seconds": self.seconds(), "best": p.best,
                   "last": self.last_metrics, "checkpoint": self.best_path}
        if info.is_main:
            _log(self.log_path, {"event": "end", **summary})
        summary = broadcast_object(info, summary)
        summary["model"] = self.model  # this process's trained module (not part of the broadcast)
        return summary

    def seconds(self) -> float:
        return round(time.time() - self.t0, 2)

    # ------------------------------------------------------------- epoch loop
    def train_epoch(self) -> bool:
        """The remaining batches of epoch ``progress.epoch``, one optimizer step each, with a
        ``last.pt`` every ``checkpoint_every`` steps inside the epoch. True when ``max_steps``
        stopped it."""
        from tqdm import tqdm

        opts, info, p = self.opts, self.info, self.progress
        self.model.train()
        self.sampler.set_epoch(p.epoch, p.batch)
        bar = tqdm(self.loader, desc=f"epoch {p.epoch + 1}/{self.epochs}", total=self.per_epoch, initial=p.batch,
                   disable=None if (opts.progress and info.is_main) else True, leave=False, dynamic_ncols=True)
        stopped = False
        for b in bar:
            # the loader checked the batch's values (collate): the step reads nothing back
            mask = None
            if self.fixed_shapes:
                b, mask = pad_batch(b, self.batch, self.cfg.max_query_length)
                mask = mask.to(self.device, non_blocking=True)
            losses = self.train_step(b.to(self.device, non_blocking=True), mask)
            p.step += 1
            p.batch += 1
            if info.is_main and p.step % opts.log_every == 0:
                self.log_step(losses, bar)
            if p.step % opts.checkpoint_every == 0 and p.batch < self.per_epoch:
                if info.is_main:
                    save_checkpoint(self.last_path, self.checkpoint_state())
                barrier(info)
            if self.on_step is not None:
                self.on_step(p.step)
            if opts.max_steps is not None and p.step >= opts.max_steps:
                stopped = True
                break
        bar.close()
        return stopped

    def log_step(self, losses, bar) -> None:
        """One ``step`` record: the total (eq. 18) and its terms; ``boundary`` (eq. 17) only for
        a head that regresses offsets (the others leave it out of the total)."""
        total = losses.total.item()
        bar.set_postfix(loss=f"{total:.4f}")
        record = {"event": "step", "epoch": self.progress.epoch, "step": self.progress.step, "loss": total,
                  "alignment": losses.alignment.item()}
        if self.model.localization.regresses:
            record["boundary"] = losses.boundary.item()
        _log(self.log_path, {**record, "seconds": self.seconds()})

    # --------------------------------------------------- validation, checkpoints
    def end_of_segment(self) -> None:
        """After an epoch, or where ``max_steps`` stopped the run: the main process evaluates the
        validation split (``best.pt`` when it improves) and writes ``last.pt``; all wait."""
        if self.info.is_main:
            if self.val_loader is not None:
                self.evaluate_and_keep_best()
            save_checkpoint(self.last_path, self.checkpoint_state())
        barrier(self.info)

    def evaluate_and_keep_best(self) -> None:
        """Score the validation split, log it and write ``best.pt`` when ``opts.select_metric``
        improves (ties: mIoU)."""
        opts, p = self.opts, self.progress
        res = val_result(self.model, self.val_ds, self.val_loader, opts, self.device, self.amp)
        self.last_metrics = metrics = res.metrics
        key = (metrics.get(opts.select_metric, 0.0), metrics["mIoU"])
        improved = p.best is None or key > tuple(p.best["key"])
        if improved:
            p.best = {"key": list(key), "epoch": p.epoch, "step": p.step, "metrics": metrics}
        _log(self.log_path, {"event": "eval", "epoch": p.epoch, "step": p.step, "protocol": opts.protocol,
                             "metrics": metrics, "best": improved, "seconds": self.seconds()})
        if opts.progress:
            mark = "  (best)" if improved else ""
            print(f"epoch {p.epoch}/{self.epochs} step {p.step}: val {res.summary()}{mark}", flush=True)
        if improved:
            save_checkpoint(self.best_path, self.checkpoint_state(full=False))

    def checkpoint_state(self, full: bool = True) -> dict:
        """``full``: the ``last.pt`` state (resumable: optimizer, position, random states);
        otherwise the ``best.pt`` state (weights, config, vocabulary, epoch, step, metrics)."""
        opts, p = self.opts, self.progress
        state = {"model": self.model.state_dict(), "config": self.cfg.to_dict(),
                 "vocab": self.train_ds.vocab.state_dict(), "epoch": p.epoch, "step": p.step, "best": p.best,
                 "dataset": opts.dataset, "backend": opts.backend, "protocol": opts.protocol, **opts.extra}
        if full:
            state.update(optimizer=self.optimizer.state_dict(), batch_in_epoch=p.batch, rng=torch.get_rng_state(),
                         cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)
        return state


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
    return Trainer(cfg, train_ds, val_ds, opts, dist_info, on_step).fit()
