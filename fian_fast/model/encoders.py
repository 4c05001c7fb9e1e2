"""Query and video representations (paper section 3.2, eq. 1-3).

Every padded word or frame is masked: the BiGRUs never carry padding into a valid position, the
video self-attention never attends to it, and padded output rows are exactly zero.
"""
from __future__ import annotations

import math
import torch
from torch import nn

from ..ops.bigru import BiGRUWeights, bigru, flatten_bigru_weights, reverse_within_lengths
from ..reference.cga import length_mask

__all__ = ["BiGRU", "QueryEncoder", "VideoEncoder", "zero_padding", "reverse_within_lengths"]


def zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` [B, L, C] with rows ``>= lengths[b]`` set to exactly 0.

    ``torch.where`` (not a multiply) so that any padded content, even NaN, is dropped and its
    gradient is exactly zero.
    """
    mask = length_mask(lengths, x.shape[1])[..., None]
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


class _GRUParameters(nn.Module):
    """The parameters of a one-layer bidirectional ``nn.GRU`` under its names (``weight_ih_l0``,
    ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` and their ``_reverse`` twins) and with its
    initialization, so state dicts load either way; the module is not an ``nn.GRU``, which
    ``torch.compile`` refuses to trace. On CUDA each direction's four are views into one flat
    buffer in cuDNN's layout (:func:`~fian_fast.ops.bigru.flatten_bigru_weights`), made again
    whenever the parameters move (``.to()``, ``.cuda()``, ``.double()``), as ``nn.GRU`` does."""

    NAMES = tuple(name + suffix for suffix in ("", "_reverse")
                  for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        shapes = {"weight_ih_l0": (3 * hidden_size, input_size), "weight_hh_l0": (3 * hidden_size, hidden_size),
                  "bias_ih_l0": (3 * hidden_size,), "bias_hh_l0": (3 * hidden_size,)}
        for name in self.NAMES:
            shape = shapes[name.replace("_reverse", "")]
            self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def weights(self) -> BiGRUWeights:
        return BiGRUWeights(*(getattr(self, name) for name in self.NAMES))

    def flatten_parameters(self) -> bool:
        """cuDNN's flat layout on CUDA (elsewhere a no-op returning False)."""
        return flatten_bigru_weights(self.weights(), self.input_size)

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        return result


class BiGRU(nn.Module):
    """Bidirectional GRU over padded sequences (eq. 1-3): ``h_i = [h_i^f; h_i^b]``, through the
    opaque op :func:`fian_fast.ops.bigru` (no packing, lengths never leave the device, one node of
    a compiled graph, cuDNN on CUDA). At every valid position the result equals a packed
    ``nn.GRU``'s; rows ``>= lengths[b]`` are exactly zero.

    ``hidden_size`` is the width of the concatenated output (``hidden_size // 2`` per direction,
    see :mod:`fian_fast.config`). The parameters carry ``nn.GRU``'s names under ``.gru``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = _GRUParameters(input_size, hidden_size // 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x: [B, L, input_size]; lengths: int [B] in [0, L], on the device of ``x`` (never read on
        the host). Returns [B, L, hidden_size], zero at rows ``>= lengths[b]``."""
        return bigru(x, lengths, self.gru.weights(), validate=False)


class QueryEncoder(nn.Module):
    """Word vectors -> BiGRU -> ``h_q`` (eq. 1-3)."""

    def __init__(self, word_dim: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = BiGRU(word_dim, hidden_size)

    def forward(self, query: torch.Tensor, query_lengths: torch.Tensor) -> torch.Tensor:
        """query: float [B, Lq, word_dim] (padding already zeroed); query_lengths: int64 [B].
        Returns ``h_q`` float [B, Lq, d_h], zero at padded words."""
        return self.gru(self.dropout(query), query_lengths)


class VideoEncoder(nn.Module):
    """Video features -> Linear(d_h) -> multi-head self-attention (residual + LayerNorm) ->
    BiGRU -> ``h_v`` (section 3.2; the projection to 512 of section 4.3)."""

    def __init__(self, video_dim: int, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(video_dim, hidden_size)
        self.attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.gru = BiGRU(hidden_size, hidden_size)

    def forward(self, video: torch.Tensor, video_lengths: torch.Tensor) -> torch.Tensor:
        """video: float [B, Lv, video_dim] (padding already zeroed); video_lengths: int64 [B].
        Returns ``h_v`` float [B, Lv, d_h], zero at padded frames."""
        x = self.dropout(self.proj(video))
        pad = ~length_mask(video_lengths, x.shape[1])          # True = never attended
        attended, _ = self.attn(x, x, x, key_padding_mask=pad, need_weights=False)
        x = zero_padding(self.norm(x + self.dropout(attended)), video_lengths)
        return self.gru(x, video_lengths)
