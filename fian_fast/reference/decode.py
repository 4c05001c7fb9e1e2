"""Pure-PyTorch oracle of :func:`fian_fast.ops.decode` (section 3.5, inference: refine candidates
with the predicted offsets of eq. 17, rank by the confidence score, NMS, top-n, seconds)."""
from __future__ import annotations

from typing import Optional

import torch

from .temporal_nms import nms_one

__all__ = ["decode", "refine_segments"]


def refine_segments(candidates: torch.Tensor, offsets: torch.Tensor, video_lengths: torch.Tensor) -> torch.Tensor:
    """``candidate + offsets``, (start, end) re-ordered when crossed, clipped to
    ``[0, video_lengths[b]]``; Tensor[B, N, 2] in float32 (float64 if an input is float64), frames."""
    acc = torch.float64 if torch.float64 in (candidates.dtype, offsets.dtype) else torch.float32
    r = candidates.to(acc).unsqueeze(0) + offsets.to(acc)                 # [B, N, 2]
    lo, hi = torch.minimum(r[..., 0], r[..., 1]), torch.maximum(r[..., 0], r[..., 1])
    length = video_lengths.to(acc)[:, None]
    lo = torch.minimum(lo.clamp(min=0), length)
    hi = torch.minimum(hi.clamp(min=0), length)
    return torch.stack([lo, hi], dim=-1)


def decode(candidates: torch.Tensor, logits: torch.Tensor, offsets: torch.Tensor, video_lengths: torch.Tensor,
           durations: torch.Tensor, iou_threshold: float, top_n: int, valid: Optional[torch.Tensor] = None):
    """Top-n predicted moments per sample.

    Args:
        candidates: Tensor[N, 2], floating, candidate windows ``[start, end)`` in frames.
        logits: Tensor[B, N], floating, score logits (cs = sigmoid(logit)); no NaN.
        offsets: Tensor[B, N, 2], floating, predicted ``(δs, δe)`` in frames (eq. 17).
        video_lengths: Tensor[B], int64, valid frames per sample in [1, T].
        durations: Tensor[B], floating, video durations in seconds.
        iou_threshold: NMS threshold in [0, 1] on refined segments (strict ``>`` suppresses).
        top_n: >= 1, moments kept per sample.
        valid: optional bool Tensor[B, N]; ``None`` = candidates whose start < video_lengths[b].
    Returns:
        ``(segments, scores, indices)``: Tensor[B, top_n, 2] float32 seconds, Tensor[B, top_n]
        float32 sigmoid scores, Tensor[B, top_n] int64 candidate indices; padding slots hold
        segment (0, 0), score 0, index -1. Ranking uses the logits (sigmoid is monotone), so equal
        sigmoid values from float rounding never reorder candidates; equal logits rank by index.
        Floats are computed in float64 if any of candidates, logits, offsets is float64, else in
        float32.
    """
    B, N = logits.shape
    device = logits.device
    # One compute dtype for every float input: float64 if any is float64, else float32.
    acc = torch.float64 if torch.float64 in (candidates.dtype, logits.dtype, offsets.dtype) else torch.float32
    candidates, logits, offsets = candidates.to(acc), logits.to(acc), offsets.to(acc)
    refined = refine_segments(candidates, offsets, video_lengths)
    if valid is None:
        valid = candidates[:, 0].to(refined.dtype).unsqueeze(0) < video_lengths.to(refined.dtype)[:, None]
    seg_out = torch.zeros(B, top_n, 2, dtype=torch.float32, device=device)
    score_out = torch.zeros(B, top_n, dtype=torch.float32, device=device)
    idx_out = torch.full((B, top_n), -1, dtype=torch.int64, device=device)
    scores = torch.sigmoid(logits)
    for b in range(B):
        keep = nms_one(refined[b].cpu(), logits[b].cpu(), valid[b].cpu(), iou_threshold, top_n).to(device)
        n = int((keep >= 0).sum())
        if n == 0:
            continue
        k = keep[:n]
        seconds = refined[b, k] / video_lengths[b].to(refined.dtype) * durations[b].to(refined.dtype)
        seg_out[b, :n] = seconds.float()
        score_out[b, :n] = scores[b, k].float()
        idx_out[b, :n] = k
    return seg_out, score_out, idx_out
