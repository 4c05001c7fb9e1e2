"""Training loss of section 3.5 (eq. 15-18).

Candidates are clipped to each sample's valid length, their IoU ``o_j`` with the ground truth
(in frames: ``gt * video_lengths``) is computed, and candidates with ``o_j > τ`` are positives.
Only valid candidates (``start < video_lengths[b]``) take part.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import torch
import torch.nn.functional as F

from ..reference import iou_label as reference_iou_label
from ._dispatch import fast_op

__all__ = ["FIANLoss", "clip_candidates", "iou_label", "alignment_loss", "boundary_loss", "fian_loss"]


class FIANLoss(NamedTuple):
    """Scalars: ``total`` (eq. 18) = ``alignment`` (eq. 16) + α ``boundary`` (eq. 17)."""
    total: torch.Tensor
    alignment: torch.Tensor
    boundary: torch.Tensor


def clip_candidates(candidates: torch.Tensor, video_lengths: torch.Tensor) -> torch.Tensor:
    """candidates [N, 2] frames, video_lengths int [B] -> float [B, N, 2] with both ends clamped to
    ``[0, video_lengths[b]]`` (an invalid candidate becomes the empty window at the end)."""
    hi = video_lengths.to(candidates.dtype)[:, None, None]
    return torch.minimum(candidates[None].clamp(min=0), hi)


def iou_label(candidates: torch.Tensor, gt: torch.Tensor, tau: float,
              backend: str = "reference") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IoU labels of the candidates (section 3.5).

    Args:
        candidates: float [B, N, 2], frames (already clipped).
        gt: float [B, 2], frames.
        tau: positive threshold τ (strict: ``o_j > τ``).
    Returns:
        iou float [B, N], positive bool [B, N], offset_targets float [B, N, 2] = gt - candidate
        (δs, δe of eq. 17), frames.
    """
    op = fast_op("iou_label", candidates.device) if backend == "fast" else None
    if op is not None:
        return op(candidates, gt, tau, validate=False)   # the model's own tensors: no value checks
    return reference_iou_label(candidates, gt, tau)


def _acc_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _set_mean(values: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``members`` (bool, same shape); 0 for an empty set."""
    count = members.sum()
    total = torch.where(members, values, torch.zeros_like(values)).sum()
    return total / count.clamp(min=1).to(values.dtype)


def alignment_loss(logits: torch.Tensor, iou: torch.Tensor, positive: torch.Tensor,
                   valid: torch.Tensor) -> torch.Tensor:
    """Eq. 15-16: ``-Σ_{z∈{pos,neg}} 1/N_z Σ_j [o_j log cs_j + (1-o_j) log(1-cs_j)]``.

    ``cs_j = σ(logit_j)``; the binary cross-entropy against the soft target ``o_j`` is computed
    from the logits (``max(x,0) - x o + log(1 + e^{-|x|})``), exact and never ``log 0``.
    Positives and negatives are averaged separately over the whole batch (valid candidates
    only) and the two means summed; an empty set contributes 0.

    logits [B, N], iou [B, N] in [0, 1], positive / valid bool [B, N] -> scalar (float32; float64 for float64).
    """
    acc = _acc_dtype(logits)
    per = F.binary_cross_entropy_with_logits(logits.to(acc), iou.to(acc), reduction="none")     # -L_j
    return _set_mean(per, valid & positive) + _set_mean(per, valid & ~positive)


def boundary_loss(offsets: torch.Tensor, offset_targets: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Eq. 17: ``1/N_pos Σ_j R1(δ̂s_j - δs_j) + R1(δ̂e_j - δe_j)`` over the positives (R1 = smooth
    L1, β = 1); 0 when there is none.

    offsets, offset_targets float [B, N, 2] frames; positive bool [B, N] -> scalar (float32; float64 for float64).
    """
    acc = _acc_dtype(offsets)
    per = F.smooth_l1_loss(offsets.to(acc), offset_targets.to(acc), reduction="none").sum(-1)
    return _set_mean(per, positive)


def fian_loss(logits: torch.Tensor, offsets: torch.Tensor, candidates: torch.Tensor, valid: torch.Tensor,
              video_lengths: torch.Tensor, gt: torch.Tensor, tau: float, alpha: float,
              backend: str = "reference") -> FIANLoss:
    """Eq. 18: ``L = L_align + α L_b``.

    Args:
        logits [B, N]; offsets [B, N, 2] frames; candidates [N, 2] frames; valid bool [B, N];
        video_lengths int64 [B]; gt float [B, 2], fractions of the duration in [0, 1].
    """
    # Labels in the loss's accumulation dtype: float64 models get float64 IoUs and targets.
    acc = torch.promote_types(_acc_dtype(logits), _acc_dtype(offsets))
    clipped = clip_candidates(candidates.to(acc), video_lengths)
    gt_frames = gt.to(acc) * video_lengths.to(acc)[:, None]
    iou, positive, targets = iou_label(clipped, gt_frames, tau, backend)
    positive = positive & valid
    align = alignment_loss(logits, iou, positive, valid)
    bound = boundary_loss(offsets, targets, positive)
    return FIANLoss(align + alpha * bound, align, bound)
