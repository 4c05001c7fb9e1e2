"""Inference (section 3.5): rank candidates by score, temporal NMS, top-n, frames -> seconds."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from ..reference import decode as reference_decode
from ._dispatch import fast_op
from .loss import clip_candidates

__all__ = ["Prediction", "decode", "clipped_offsets"]


class Prediction(NamedTuple):
    """segments float32 [B, n, 2] seconds; scores float32 [B, n] = σ(logit); indices int64 [B, n]
    candidate index, -1 in padding slots (segment (0, 0), score 0)."""
    segments: torch.Tensor
    scores: torch.Tensor
    indices: torch.Tensor


def clipped_offsets(candidates: torch.Tensor, offsets: torch.Tensor,
                    video_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(candidates, offsets)`` in float32, the offsets shifted by ``clipped - window``.

    The loss regresses the offsets from each window clipped to its video (eq. 17): with the
    shifted offsets, ``candidates + offsets`` is that same refined segment. The model's
    :meth:`~fian_fast.FIAN.decode` and the evaluator's ranking both refine through here.

    Args:
        candidates [N, 2] frames; offsets [B, N, 2] frames; video_lengths int64 [B].
    """
    cand = candidates.float()
    return cand, offsets.float() + (clip_candidates(cand, video_lengths) - cand)


def decode(candidates: torch.Tensor, logits: torch.Tensor, offsets: torch.Tensor, video_lengths: torch.Tensor,
           durations: torch.Tensor, iou_threshold: float, top_n: int, valid: Optional[torch.Tensor] = None,
           backend: str = "reference") -> Prediction:
    """Top-n segments per sample after temporal NMS.

    The refined segment of candidate j is ``candidates[j] + offsets[b, j]``, re-ordered if crossed
    and clipped to ``[0, video_lengths[b]]`` (the model passes offsets relative to the clipped
    window, see :meth:`FIAN.decode`).
    Candidates are ranked by ``σ(logit)``; greedy NMS drops a segment whose IoU with one kept
    before is ``> iou_threshold``; ties keep the lower index first; invalid candidates are never
    kept. Frames become seconds by ``frames / video_lengths[b] * durations[b]``.

    Args:
        candidates [N, 2] frames; logits [B, N]; offsets [B, N, 2] frames; video_lengths int64 [B];
        durations float [B] seconds; valid bool [B, N] or None.
    """
    op = fast_op("decode", logits.device) if backend == "fast" else None
    if op is not None:   # the model's own tensors, checked where they entered: no value checks
        return Prediction(*op(candidates, logits, offsets, video_lengths, durations, iou_threshold, top_n, valid,
                              validate=False))
    return Prediction(*reference_decode(candidates, logits, offsets, video_lengths, durations, iou_threshold, top_n,
                                        valid))
