"""``fian_fast.ops.decode``: refine, score, NMS and map to seconds in one kernel per batch
(section 3.5, inference; offsets of eq. 17)."""
from __future__ import annotations

from typing import Optional

import torch

from .._extension import load_ops, register_fake
from .._validation import (check_data, check_durations, check_fraction, check_same_device, check_tensor, check_top,
                           check_valid, durations_rule)

__all__ = ["decode"]


def decode(candidates: torch.Tensor, logits: torch.Tensor, offsets: torch.Tensor, video_lengths: torch.Tensor,
           durations: torch.Tensor, iou_threshold: float, top_n: int, valid: Optional[torch.Tensor] = None, *, validate: bool = True):
    """Top-n predicted moments per sample.

    Each candidate is refined to ``candidate + offsets`` (start and end swapped if they cross),
    clipped to ``[0, video_lengths[b]]``, ranked by its logit (cs = sigmoid(logit); equal logits
    by lower index), suppressed greedily when its IoU with a kept one exceeds ``iou_threshold``
    (strict), and the kept ones are mapped to ``frames / video_lengths[b] * durations[b]``.

    Args:
        candidates: Tensor[N, 2], floating, candidate windows ``[start, end)`` in frames.
        logits: Tensor[B, N], floating, score logits; no NaN.
        offsets: Tensor[B, N, 2], floating, predicted ``(δs, δe)`` in frames; no NaN.
        video_lengths: Tensor[B], integer, valid frames per sample (>= 1).
        durations: Tensor[B], floating, video durations in seconds (finite, > 0).
        iou_threshold: in [0, 1].
        top_n: a positive int, moments kept per sample.
        valid: optional bool Tensor[B, N]; ``None`` = candidates whose start < video_lengths[b].
        validate: check the values (no NaN, start <= end, lengths >= 1, durations; one host read).
            ``False`` for callers whose data was checked where it entered.
    Returns:
        ``(segments, scores, indices)``: Tensor[B, top_n, 2] float32 seconds, Tensor[B, top_n]
        float32 sigmoid scores, Tensor[B, top_n] int64 candidate indices; padding slots hold
        segment (0, 0), score 0, index -1. Computed in float64 if any of candidates, logits,
        offsets is float64, else float32. On CUDA: one kernel, one block per sample.
    """
    fn = "decode"
    check_tensor(fn, "candidates", candidates, dim=2, last=2, floating=True)
    N = candidates.shape[0]
    check_tensor(fn, "logits", logits, dim=2, floating=True, shape=(None, N))
    B = logits.shape[0]
    check_tensor(fn, "offsets", offsets, dim=3, floating=True, shape=(B, N, 2))
    check_tensor(fn, "video_lengths", video_lengths, dim=1, floating=False, shape=(B,))
    check_durations(fn, durations, B, validate=False)   # its values with the others, below
    iou_threshold = check_fraction(fn, "iou_threshold", iou_threshold)
    top_n = check_top(fn, "top_n", top_n)
    check_valid(fn, valid, B, N)
    check_same_device(fn, candidates=candidates, logits=logits, offsets=offsets, video_lengths=video_lengths,
                      durations=durations, valid=valid)
    if validate:
        check_data(fn, intervals=(("candidates", candidates),), no_nan=(("logits", logits), ("offsets", offsets)),
                   extra=(((video_lengths < 1).any(),
                           lambda: f"video_lengths should be >= 1, got minimum {int(video_lengths.min())}"),
                          durations_rule(durations)))
    dt = torch.float64 if torch.float64 in (candidates.dtype, logits.dtype, offsets.dtype) else torch.float32
    if B == 0:
        return (torch.zeros((0, top_n, 2), dtype=torch.float32, device=logits.device),
                torch.zeros((0, top_n), dtype=torch.float32, device=logits.device),
                torch.full((0, top_n), -1, dtype=torch.int64, device=logits.device))
    load_ops()

    def cast(t, dtype):  # a dtype test costs less than a no-op .to() through the dispatcher
        return t if t.dtype == dtype else t.to(dtype)

    return torch.ops.fian_fast.decode(cast(candidates, dt), cast(logits, dt), cast(offsets, dt),
                                      cast(video_lengths, torch.int64), cast(durations, dt), iou_threshold, top_n, valid)


@register_fake("fian_fast::decode")
def _decode_fake(candidates, logits, offsets, video_lengths, durations, iou_threshold, top_n, valid=None):
    B = logits.shape[0]
    return (logits.new_empty((B, top_n, 2), dtype=torch.float32), logits.new_empty((B, top_n), dtype=torch.float32),
            logits.new_empty((B, top_n), dtype=torch.int64))
