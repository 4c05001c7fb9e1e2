"""Query and video representations (paper section 3.2, eq. 1-3).

Every padded word or frame is masked: packed BiGRUs never read padding, the video
self-attention never attends to it, and padded output rows are exactly zero.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..reference.cga import length_mask

__all__ = ["BiGRU", "QueryEncoder", "VideoEncoder", "zero_padding"]


def zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``x`` [B, L, C] with rows ``>= lengths[b]`` set to exactly 0.

    ``torch.where`` (not a multiply) so that any padded content, even NaN, is dropped and its
    gradient is exactly zero.
    """
    mask = length_mask(lengths, x.shape[1])[..., None]
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


class BiGRU(nn.Module):
    """Bidirectional GRU over packed sequences (eq. 1-3): ``h_i = [h_i^f; h_i^b]``.

    ``hidden_size`` is the width of the concatenated output (``hidden_size // 2`` per direction,
    see :mod:`fian_fast.config`).
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size // 2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, cpu_lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B, L, input_size]; lengths: int [B] in [1, L]; ``cpu_lengths`` the same on the CPU
        if the caller has it (packing needs CPU lengths: a CUDA copy here would stall the stream).
        Returns [B, L, hidden_size], zero at rows ``>= lengths[b]``."""
        cpu_lengths = lengths.detach().cpu() if cpu_lengths is None else cpu_lengths
        packed = pack_padded_sequence(x, cpu_lengths.to(torch.int64), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class QueryEncoder(nn.Module):
    """Word vectors -> BiGRU -> ``h_q`` (eq. 1-3)."""

    def __init__(self, word_dim: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = BiGRU(word_dim, hidden_size)

    def forward(self, query: torch.Tensor, query_lengths: torch.Tensor,
                cpu_lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """query: float [B, Lq, word_dim] (padding already zeroed); query_lengths: int64 [B]
        (``cpu_lengths``: optional CPU copy). Returns ``h_q`` float [B, Lq, d_h], zero at padded words."""
        return self.gru(self.dropout(query), query_lengths, cpu_lengths)


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

    def forward(self, video: torch.Tensor, video_lengths: torch.Tensor,
                cpu_lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """video: float [B, Lv, video_dim] (padding already zeroed); video_lengths: int64 [B]
        (``cpu_lengths``: optional CPU copy). Returns ``h_v`` float [B, Lv, d_h], zero at padded frames."""
        x = self.dropout(self.proj(video))
        pad = ~length_mask(video_lengths, x.shape[1])          # True = never attended
        attended, _ = self.attn(x, x, x, key_padding_mask=pad, need_weights=False)
        x = zero_padding(self.norm(x + self.dropout(attended)), video_lengths)
        return self.gru(x, video_lengths, cpu_lengths)
