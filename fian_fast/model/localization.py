"""Content-oriented localization module (section 3.4).

BiGRU over M -> per scale a temporal Conv1d with kernel θk (the window size) and stride θs, so
each candidate window is scored from all the features it covers. The paper's two convolutions
``Conv1d(1, θk, θs)`` (score) and ``Conv1d(2, θk, θs)`` (offsets) read the same input with the
same kernel and stride, so they are stacked into one ``Conv1d(3, θk, θs)`` per scale — an exact
rewriting: output channel 0 is the score logit, channels 1-2 the offsets (δs, δe) in frames.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..reference import window_candidates, window_score
from ._dispatch import fast_op
from .encoders import BiGRU

__all__ = ["LocalizationHead"]


class LocalizationHead(nn.Module):
    """``M̂ = BiGRU(M)`` then content-oriented window scoring (section 3.4).

    ``backend="fast"`` calls ``fian_fast.ops.window_score`` (same weights, same function) when
    that op exists; otherwise :func:`fian_fast.reference.window_score` (per-scale ``F.conv1d``
    concatenated in candidate order) runs.
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

    def forward(self, fused: torch.Tensor, video_lengths: torch.Tensor,
                cpu_lengths: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """fused: M [B, n_v, C_M]; video_lengths int64 [B] (``cpu_lengths``: optional CPU copy).
        Returns (logits [B, N], offsets [B, N, 2] in frames)."""
        features = self.gru(self.dropout(fused), video_lengths, cpu_lengths)
        score = window_score
        if self.backend == "fast":
            score = fast_op("window_score", features.device) or score
        out = score(features, list(self.weights), list(self.biases), self.window_sizes, self.strides)
        return out[..., 0], out[..., 1:]
