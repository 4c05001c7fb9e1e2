"""Inference (section 3.5): rank candidates by score, temporal NMS, top-n, frames -> seconds."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ._dispatch import fast_op, reference_op

__all__ = ["Prediction", "decode"]


class Prediction(NamedTuple):
    """segments float32 [B, n, 2] seconds; scores float32 [B, n] = σ(logit); indices int64 [B, n]
    candidate index, -1 in padding slots (segment (0, 0), score 0)."""
    segments: torch.Tensor
    scores: torch.Tensor
    indices: torch.Tensor


def _plain_decode(candidates, logits, offsets, video_lengths, durations, iou_threshold, top_n, valid=None):
    B, N = logits.shape
    length = video_lengths.to(torch.float32)[:, None]                               # [B, 1]
    cand = torch.minimum(candidates.float()[None].clamp(min=0), length[..., None])  # clipped, [B, N, 2]
    refined = cand + offsets.float()
    refined = torch.stack([refined.min(-1).values, refined.max(-1).values], dim=-1)
    refined = torch.minimum(refined.clamp(min=0), length[..., None])
    scores = torch.sigmoid(logits.float())
    if valid is None:
        valid = candidates[None, :, 0].to(length.device) < length
    segments = torch.zeros(B, top_n, 2)
    out_scores = torch.zeros(B, top_n)
    indices = torch.full((B, top_n), -1, dtype=torch.int64)
    for b in range(B):
        order = torch.argsort(-scores[b].cpu(), stable=True).tolist()
        segs, ok = refined[b].cpu(), valid[b].cpu()
        kept = []
        for j in order:
            if len(kept) == top_n:
                break
            if not ok[j]:
                continue
            s, e = segs[j]
            overlap = False
            for k in kept:
                ks, ke = segs[k]
                inter = max(0.0, float(min(e, ke) - max(s, ks)))
                union = float(e - s) + float(ke - ks) - inter
                if union > 0 and inter / union > iou_threshold:
                    overlap = True
                    break
            if not overlap:
                kept.append(j)
        for slot, j in enumerate(kept):
            indices[b, slot] = j
            out_scores[b, slot] = scores[b, j]
            segments[b, slot] = segs[j] / float(video_lengths[b]) * float(durations[b])
    device = logits.device
    return segments.to(device), out_scores.to(device), indices.to(device)


def decode(candidates: torch.Tensor, logits: torch.Tensor, offsets: torch.Tensor, video_lengths: torch.Tensor,
           durations: torch.Tensor, iou_threshold: float, top_n: int, valid: Optional[torch.Tensor] = None,
           backend: str = "reference") -> Prediction:
    """Top-n segments per sample after temporal NMS.

    The refined segment of candidate j is its window (end clipped to ``video_lengths[b]``) plus
    the predicted offsets (δs, δe), re-ordered if crossed and clipped to ``[0, video_lengths[b]]``.
    Candidates are ranked by ``σ(logit)``; greedy NMS drops a segment whose IoU with one kept
    before is ``> iou_threshold``; ties keep the lower index first; invalid candidates are never
    kept. Frames become seconds by ``frames / video_lengths[b] * durations[b]``.

    Args:
        candidates [N, 2] frames; logits [B, N]; offsets [B, N, 2] frames; video_lengths int64 [B];
        durations float [B] seconds; valid bool [B, N] or None.
    """
    fn = fast_op("decode") if backend == "fast" else None
    fn = fn or reference_op("decode") or _plain_decode
    return Prediction(*fn(candidates, logits, offsets, video_lengths, durations, iou_threshold, top_n, valid))
