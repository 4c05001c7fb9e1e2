"""Pure-PyTorch oracle of :func:`fian_fast.ops.window_score` (section 3.4: each candidate window
is scored from all the features inside it)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["window_score"]


def window_score(features: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 window_sizes: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Score logit and boundary offsets of every candidate window, one Conv1d per scale.

    Args:
        features: Tensor[B, T, C], floating, the aggregated sequence ``M̂`` (one row per frame).
        weights: per scale ``s`` a Tensor[3, C, k_s] (Conv1d weight), dtype of ``features``.
        biases: per scale a Tensor[3].
        window_sizes: ``k_s`` per scale, frames.
        strides: ``θ_s`` per scale, frames.
    Returns:
        Tensor[B, N, 3], dtype of ``features``: channel 0 the score logit (cs = sigmoid, eq. 15),
        channels 1..2 the offsets ``(δs, δe)`` in frames (eq. 17); candidates ordered as
        :func:`window_candidates` orders them.
    """
    x = features.transpose(1, 2)
    outs = [F.conv1d(x, w, b, stride=s) for w, b, s in zip(weights, biases, strides)]
    return torch.cat(outs, dim=2).transpose(1, 2)
