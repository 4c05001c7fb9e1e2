"""One training step of FIAN without a host read: forward, loss (eq. 15-18), backward, gradient
clipping and the Adam step (section 4.3), run in one of three modes:

``eager``
    plain PyTorch. Values were checked where the batch entered (the loader); the model and its
    ops take the trusted path (``validate=False``), the BiGRUs need no lengths on the host, and
    fused Adam keeps its step counter on the parameters' device, so nothing in the step waits
    for the device.
``compile``
    forward + loss compiled whole (``torch.compile(fullgraph=True)``); backward through the
    compiled graph, clipping and Adam eager. The trainer pads every batch to one shape
    (:func:`pad_batch`) so that the graph compiles once. Each BiGRU is one opaque node
    (:func:`fian_fast.ops.bigru`, cuDNN on CUDA), and so is CGA's attention core (on CUDA its
    Triton kernels, on the CPU one ATen-backed op), so compile time does not grow with the frames:
    on a 2-core CPU (one thread, batch 2) 25-34 s at every preset, 32 to 200 frames, about half of
    it building inductor's ~50 C++ kernels; 1-2 s once inductor's cache holds them
    (``benchmarks/test_bench_compile.py``).
``cuda-graphs``
    the whole step — forward, loss, backward, clipping and the optimizer step — captured once in
    a CUDA graph and replayed for every batch (CUDA only). Every batch must have one shape: use
    :func:`pad_batch`. The first ``warmup`` steps run eagerly on a side stream (they compile the
    Triton kernels, pick cuBLAS/cuDNN algorithms and create Adam's state, none of which may happen
    during capture); then one capture, then replays. Not captured, and why:

    * the data loader and the copy of each batch into the graph's static input buffers (host
      work, before the replay);
    * reading the losses for the log (made every ``log_every`` steps, after the replay);
    * evaluation and checkpoints (between epochs, outside the step);
    * the learning rate is a Python float baked into the graph: a schedule that changes it
      would need a tensor learning rate (the trainer keeps it constant, as the paper does).

    Dropout draws new numbers at every replay (the CUDA generator's offsets are graph-safe);
    autocast runs with its cast cache off, as capture requires.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .data.dataset import Batch
from .model.loss import FIANLoss

__all__ = ["MODES", "TrainStep", "check_mode", "make_optimizer", "pad_batch"]

MODES = ("eager", "compile", "cuda-graphs")


def check_mode(fn: str, mode, name: str = "mode") -> str:
    """``mode`` is one of :data:`MODES`: the one rule for the step mode, for every entry point that
    takes one (ValueError naming ``fn``, the argument ``name`` and the value)."""
    if mode not in MODES:
        raise ValueError(f"{fn}: {name} should be one of {MODES}, got {mode!r}")
    return mode


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, mode: str = "eager") -> torch.optim.Adam:
    """Adam over ``model``'s parameters, fused (one kernel set per step, step counters on the
    parameters' device: no host read); capturable for ``cuda-graphs``."""
    check_mode("make_optimizer", mode)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None,
                            capturable=mode == "cuda-graphs")


def pad_batch(batch: Batch, batch_size: int, max_query_length: int) -> Tuple[Batch, torch.Tensor]:
    """``batch`` with one fixed shape: queries padded to ``max_query_length`` words and, for a
    short (last) batch, ``batch_size - B`` padding samples appended (one zero frame, one zero
    word, ground truth [0, 1], duration 1 s). Returns ``(batch, sample_mask)``: bool [batch_size],
    False at the padding samples, which the loss leaves out (``FIAN.loss(sample_mask=...)``): a
    short batch trains exactly as if it were alone. Host tensors in, host tensors out."""
    B, Lq = batch.video.shape[0], batch.query.shape[1]
    if B > batch_size:
        raise ValueError(f"pad_batch: batch should hold at most batch_size={batch_size} samples, got {B}")
    if Lq > max_query_length:
        raise ValueError(f"pad_batch: query should have at most max_query_length={max_query_length} words, "
                         f"got {Lq}")
    extra = batch_size - B
    video = batch.video
    query = torch.nn.functional.pad(batch.query, (0, 0, 0, max_query_length - Lq))
    video_lengths, query_lengths, gt, durations = batch.video_lengths, batch.query_lengths, batch.gt, batch.durations
    if extra:
        video = torch.cat([video, video.new_zeros((extra,) + tuple(video.shape[1:]))])
        query = torch.cat([query, query.new_zeros((extra,) + tuple(query.shape[1:]))])
        ones = torch.ones(extra, dtype=video_lengths.dtype)
        video_lengths = torch.cat([video_lengths, ones])
        query_lengths = torch.cat([query_lengths, ones.to(query_lengths.dtype)])
        gt = torch.cat([gt, gt.new_tensor([[0.0, 1.0]]).expand(extra, 2)])
        durations = torch.cat([durations, durations.new_ones(extra)])
    mask = torch.arange(batch_size) < B
    padded = Batch(video, video_lengths, query, query_lengths, gt, durations,
                   list(batch.video_ids) + [""] * extra, list(batch.sentences) + [""] * extra)
    return padded, mask


class TrainStep:
    """``step(batch, sample_mask=None) -> FIANLoss`` (detached scalars on the device).

    Args:
        model: the :class:`~fian_fast.FIAN` being trained.
        optimizer: from :func:`make_optimizer` (``mode="cuda-graphs"`` needs a capturable one).
        grad_clip: max gradient norm (``<= 0``: no clipping).
        amp: bf16 autocast on CUDA.
        mode: one of :data:`MODES`.
        module: what the forward calls (a DistributedDataParallel wrapper; default ``model``).
        warmup: eager steps before the capture (``cuda-graphs``).

    The batch's values must have been checked where it entered (the loader): the step takes the
    model's trusted path and reads nothing back. With ``cuda-graphs`` the returned losses live in
    the graph's static buffers and are overwritten by the next step.
    """

    def __init__(self, model, optimizer: torch.optim.Optimizer, grad_clip: float = 0.0, amp: bool = False,
                 mode: str = "eager", module: Optional[torch.nn.Module] = None, warmup: int = 3) -> None:
        check_mode("TrainStep", mode)
        self.model, self.optimizer, self.mode = model, optimizer, mode
        self.module = module if module is not None else model
        self.grad_clip, self.amp = float(grad_clip), bool(amp)
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self._forward_loss = self._eager_forward_loss
        if mode == "compile":
            # one graph; DistributedDataParallel splits it at its buckets (no fullgraph then). On
            # the CPU, dropout keeps ATen's generator (fallback_random): inductor's CPU random
            # numbers took twice as long (TACoS: 55 ms against 25 ms a step); on CUDA its Philox
            # draws fuse into the surrounding kernels
            on_cpu = all(p.device.type == "cpu" for p in self.params)
            self._forward_loss = torch.compile(self._eager_forward_loss, fullgraph=self.module is model,
                                               options={"fallback_random": True} if on_cpu else None)
        if mode == "cuda-graphs":
            if not all(group.get("capturable", False) for group in optimizer.param_groups):
                raise ValueError("TrainStep: mode 'cuda-graphs' needs a capturable optimizer "
                                 "(make_optimizer(..., mode='cuda-graphs'))")
        self.warmup = int(warmup)
        self._graph = None
        self._static_inputs = None
        self._static_losses = None
        self._stream = None

    # ------------------------------------------------------------------ pieces
    def _eager_forward_loss(self, video, video_lengths, query, query_lengths, gt, sample_mask) -> FIANLoss:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp, cache_enabled=self.mode != "cuda-graphs"):
            out = self.module(video, video_lengths, query, query_lengths, validate=False)
        out = out._replace(logits=out.logits.float(), offsets=out.offsets.float())
        return self.model.loss(out, gt, validate=False, sample_mask=sample_mask)

    def _step(self, inputs) -> FIANLoss:
        losses = self._forward_loss(*inputs)
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return FIANLoss(*(loss.detach() for loss in losses))

    # ------------------------------------------------------------------- entry
    def __call__(self, batch: Batch, sample_mask: Optional[torch.Tensor] = None) -> FIANLoss:
        inputs = (batch.video, batch.video_lengths, batch.query, batch.query_lengths, batch.gt, sample_mask)
        if self.mode != "cuda-graphs":
            return self._step(inputs)
        return self._graph_step(inputs)

    def _graph_step(self, inputs) -> FIANLoss:
        if inputs[0].device.type != "cuda":
            raise ValueError(f"TrainStep: mode 'cuda-graphs' needs CUDA tensors, got {inputs[0].device}")
        if inputs[-1] is None:
            inputs = inputs[:-1] + (torch.ones(inputs[0].shape[0], dtype=torch.bool, device=inputs[0].device),)
        if self._static_inputs is None:
            self._static_inputs = tuple(t.clone() for t in inputs)
            self._stream = torch.cuda.Stream(device=inputs[0].device)
        for static, new in zip(self._static_inputs, inputs):
            if static.shape != new.shape or static.dtype != new.dtype:
                raise ValueError(f"TrainStep: every batch of a CUDA graph should have one shape, got "
                                 f"{tuple(new.shape)} {new.dtype} after {tuple(static.shape)} {static.dtype} "
                                 f"(pad the batches with pad_batch)")
            static.copy_(new, non_blocking=True)
        if self._graph is not None:
            self._graph.replay()
            return self._static_losses
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream())
        if self.warmup > 0:
            self.warmup -= 1
            with torch.cuda.stream(stream):
                losses = self._step(self._static_inputs)
            torch.cuda.current_stream().wait_stream(stream)
            return losses
        self._graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)   # gradients are then allocated in the graph's pool
        with torch.cuda.graph(self._graph, stream=stream):
            self._static_losses = self._step(self._static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph.replay()   # capture records the step without running it
        return self._static_losses
