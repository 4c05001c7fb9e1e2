"""Content-oriented localization module (section 3.4).

BiGRU over M -> per scale a temporal Conv1d with kernel θk (the window size) and stride θs, so
each candidate window is scored from all the features it covers. The paper's two convolutions
``Conv1d(1, θk, θs)`` (score) and ``Conv1d(2, θk, θs)`` (offsets) read the same input with the
same kernel and stride, so they are stacked into one ``Conv1d(3, θk, θs)`` per scale — an exact
rewriting: output channel 0 is the score logit, channels 1-2 the offsets (δs, δe) in frames.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ._dispatch import fast_op, reference_op
from .encoders import BiGRU

__all__ = ["window_candidates", "window_score", "LocalizationHead"]


def window_candidates(num_frames: int, window_sizes: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Candidate windows ``[start, end)`` in frames, float32 [N, 2] on the CPU, scale by scale in
    the order given, then by start: ``start = i * θs``, ``end = start + θk`` for
    ``i < (num_frames - θk) // θs + 1`` (the positions of a stride-θs, kernel-θk convolution)."""
    shared = reference_op("window_candidates")
    if shared is not None:
        return shared(num_frames, list(window_sizes), list(strides))
    rows = []
    for k, s in zip(window_sizes, strides):
        starts = torch.arange(0, num_frames - k + 1, s, dtype=torch.float32)
        rows.append(torch.stack([starts, starts + k], dim=1))
    return torch.cat(rows)


def window_score(features: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 window_sizes: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Per-scale ``F.conv1d(features^T, w_s, b_s, stride=θs)`` concatenated in candidate order.

    features [B, T, C]; weights[s] [3, C, θk]; biases[s] [3] -> [B, N, 3] (logit, δs, δe).
    """
    x = features.transpose(1, 2)
    return torch.cat([F.conv1d(x, w, b, stride=s).transpose(1, 2)
                      for w, b, s in zip(weights, biases, strides)], dim=1)


class LocalizationHead(nn.Module):
    """``M̂ = BiGRU(M)`` then content-oriented window scoring (section 3.4).

    ``backend="fast"`` calls ``fian_fast.ops.window_score`` (same weights, same function) when
    that op exists; otherwise the per-scale ``F.conv1d`` of :func:`window_score` runs.
    The candidates are a buffer [N, 2] (frames), built from ``window_sizes`` and ``strides``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_frames: int, window_sizes: Sequence[int],
                 strides: Sequence[int], dropout: float, backend: str = "reference") -> None:
        super().__init__()
        self.backend = backend
        self.window_sizes, self.strides = tuple(window_sizes), tuple(strides)
        self.dropout = nn.Dropout(dropout)
        self.gru = BiGRU(input_size, hidden_size)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for k in self.window_sizes:
            bound = 1.0 / math.sqrt(hidden_size * k)         # nn.Conv1d's default init
            self.weights.append(nn.Parameter(torch.empty(3, hidden_size, k).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(3).uniform_(-bound, bound)))
        self.register_buffer("candidates", window_candidates(num_frames, self.window_sizes, self.strides),
                             persistent=False)

    def forward(self, fused: torch.Tensor, video_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """fused: M [B, n_v, C_M]; video_lengths int64 [B].
        Returns (logits [B, N], offsets [B, N, 2] in frames)."""
        features = self.gru(self.dropout(fused), video_lengths)
        score = window_score
        if self.backend == "fast":
            score = fast_op("window_score") or score
        out = score(features, list(self.weights), list(self.biases), self.window_sizes, self.strides)
        return out[..., 0], out[..., 1:]
