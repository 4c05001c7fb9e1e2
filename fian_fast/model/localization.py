"""Content-oriented localization module (section 3.4).

BiGRU over M -> per scale a temporal Conv1d with kernel θk (the window size) and stride θs, so
each candidate window is scored from all the features it covers. The paper's two convolutions
``Conv1d(1, θk, θs)`` (score) and ``Conv1d(2, θk, θs)`` (offsets) read the same input with the
same kernel and stride, so they are stacked into one ``Conv1d(3, θk, θs)`` per scale — an exact
rewriting: output channel 0 is the score logit, channels 1-2 the offsets (δs, δe) in frames.

:func:`build_localization` builds the head a config names: this one (``"content"``), or the
point-feature anchor heads of Table 5 (``"tgn"``, ``"cmin"``, :mod:`.anchor_localization`). Every
head holds ``candidates`` [N, 2] (frames), ``anchors`` [N] (a frame per candidate: the candidate
is valid for sample b iff ``anchors < video_lengths[b]``) and ``regresses`` (whether it predicts
offsets).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import nn

from ..reference import window_candidates, window_score
from ._dispatch import fast_op
from .anchor_localization import CMINHead, TGNHead
from .encoders import BiGRU

__all__ = ["LocalizationHead", "build_localization"]


class LocalizationHead(nn.Module):
    """``M̂ = BiGRU(M)`` then content-oriented window scoring (section 3.4).

    ``backend="fast"`` calls ``fian_fast.ops.window_score`` (same weights, same function) when
    that op exists; otherwise :func:`fian_fast.reference.window_score` (per-scale ``F.conv1d``
    concatenated in candidate order) runs.
    The candidates are a buffer [N, 2] (frames), built from ``window_sizes`` and ``strides``;
    ``anchors`` [N] are their starts (a window is valid when it starts inside the video).
    """

    regresses = True

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
        candidates = window_candidates(num_frames, self.window_sizes, self.strides)
        self.register_buffer("candidates", candidates, persistent=False)
        self.register_buffer("anchors", candidates[:, 0].clone(), persistent=False)

    def forward(self, fused: torch.Tensor, video_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """fused: M [B, n_v, C_M]; video_lengths int64 [B]. Returns (logits [B, N], offsets [B, N, 2]
        in frames)."""
        features = self.gru(self.dropout(fused), video_lengths)
        score = window_score
        if self.backend == "fast":
            score = fast_op("window_score", features.device) or score
        out = score(features, list(self.weights), list(self.biases), self.window_sizes, self.strides)
        return out[..., 0], out[..., 1:]


def build_localization(localization: str, input_size: int, hidden_size: int, num_frames: int,
                       window_sizes: Sequence[int], strides: Sequence[int], dropout: float,
                       backend: str = "reference") -> nn.Module:
    """The localization head named by ``FIANConfig.localization``: ``"content"`` (section 3.4,
    :class:`LocalizationHead`), ``"tgn"`` (:class:`~.anchor_localization.TGNHead`) or ``"cmin"``
    (:class:`~.anchor_localization.CMINHead`); for the last two ``window_sizes`` are the K anchor
    lengths or widths and ``strides`` are unused."""
    if localization == "content":
        return LocalizationHead(input_size, hidden_size, num_frames, window_sizes, strides, dropout, backend)
    heads = {"tgn": TGNHead, "cmin": CMINHead}
    if localization not in heads:
        raise ValueError(f"build_localization: localization should be one of ('content', 'tgn', 'cmin'), "
                         f"got {localization!r}")
    return heads[localization](input_size, hidden_size, num_frames, window_sizes, dropout, backend)
