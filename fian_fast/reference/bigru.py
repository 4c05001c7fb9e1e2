"""Pure-PyTorch oracle of :func:`fian_fast.ops.bigru`: the bidirectional GRU of eq. 1-3 over padded
sequences, written out step by step.

The GRU cell is ``nn.GRU``'s (gates stacked ``[r; z; n]`` in each weight)::

    r = sigmoid(W_ir x_t + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x_t + b_iz + W_hz h + b_hz)
    n = tanh(W_in x_t + b_in + r * (W_hn h + b_hn))
    h = (1 - z) * n + z * h

The forward direction runs over every step from a zero state; the backward direction runs from the
last step down and holds a zero state through the padding, so each sample's backward pass starts at
its own last valid step from a zero state: the function of a packed ``nn.GRU``. Rows
``>= lengths[b]`` of the output are zero, and padded inputs never reach a valid output.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from .cga import length_mask

__all__ = ["BiGRUWeights", "bigru"]


class BiGRUWeights(NamedTuple):
    """The eight tensors of a one-layer bidirectional ``nn.GRU``, in the order and under the
    names of its parameters (without the ``_l0``): ``weight_ih`` [3H, C], ``weight_hh`` [3H, H],
    ``bias_ih`` [3H], ``bias_hh`` [3H], then the same four of the backward direction."""

    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: torch.Tensor
    bias_hh: torch.Tensor
    weight_ih_reverse: torch.Tensor
    weight_hh_reverse: torch.Tensor
    bias_ih_reverse: torch.Tensor
    bias_hh_reverse: torch.Tensor


def _gru_step(gi: torch.Tensor, h: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step: ``gi`` = W_i x_t + b_i [B, 3H] (precomputed), ``h`` [B, H] -> the next ``h``."""
    gh = h @ weight_hh.T + bias_hh
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def bigru(x: torch.Tensor, lengths: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[h^f; h^b]`` of a bidirectional GRU over padded sequences (eq. 1-3).

    Args:
        x: Tensor[B, L, C], floating.
        lengths: int Tensor[B], valid steps in [0, L]; rows ``>= lengths[b]`` of ``x`` are padding
            (any content, NaN included).
        weights: :class:`BiGRUWeights` (or the eight tensors in its order), dtype of ``x``.
    Returns:
        Tensor[B, L, 2H], dtype of ``x``: forward state then backward state at each valid step,
        zero at rows ``>= lengths[b]``.
    """
    w = BiGRUWeights(*weights)
    B, L, _ = x.shape
    H = w.weight_hh.shape[1]
    valid = length_mask(lengths, L)[..., None]                                   # [B, L, 1]
    x = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
    gi_f = x @ w.weight_ih.T + w.bias_ih                                        # [B, L, 3H]
    gi_b = x @ w.weight_ih_reverse.T + w.bias_ih_reverse
    h = x.new_zeros((B, H))
    forward = []
    for t in range(L):
        h = _gru_step(gi_f[:, t], h, w.weight_hh, w.bias_hh)
        forward.append(h)
    h = x.new_zeros((B, H))
    backward = [None] * L
    for t in reversed(range(L)):
        h = torch.where(valid[:, t], _gru_step(gi_b[:, t], h, w.weight_hh_reverse, w.bias_hh_reverse), h)
        backward[t] = h
    out = torch.cat([torch.stack(forward, 1), torch.stack(backward, 1)], dim=-1)
    return torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))
