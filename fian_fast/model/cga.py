"""Cross-modal attention blocks of section 3.3.1 and their Table 4 ablations.

All three share ``forward(query, key_value, query_lengths, key_lengths) -> [B, Lq, d]`` with
zero rows at padded queries and padded keys never attended:

* :class:`CGA` — cross-modal guided attention, eq. 4-6 (the paper's block);
* :class:`CMA` — the multi-head attention of eq. 4-5 alone, no gate (FIAN-CMA);
* :class:`SoftAttention` — single-head ``softmax(Q V^T / sqrt(d)) V`` without projections
  (FIAN-Soft).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._cga import CGAWeights
from ..reference.cga import cross_modal_attention, length_mask
from ..reference.cga import cga as reference_cga
from ._dispatch import fast_op

__all__ = ["CGA", "CMA", "SoftAttention", "build_attention"]


def _projection(d: int) -> nn.Parameter:
    """A [d, d] weight (nn.Linear convention ``y = x @ W.T``) with nn.Linear's default init."""
    w = torch.empty(d, d)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    return nn.Parameter(w)


class CMA(nn.Module):
    """CMA(Q, V) of eq. 4-5: ``n`` heads of scaled dot-product attention with W_i^Q, W_i^K,
    W_i^V (stacked along the output axis into [d_h, d_h]) and W^O, no biases."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (_projection(hidden_size) for _ in range(4))

    def forward(self, query: torch.Tensor, key_value: torch.Tensor, query_lengths: torch.Tensor,
                key_lengths: torch.Tensor) -> torch.Tensor:
        """query [B, Lq, d_h], key_value [B, Lk, d_h], lengths int64 [B] -> [B, Lq, d_h]."""
        return cross_modal_attention(query, key_value, query_lengths, key_lengths, self.w_q,
                                     self.w_k, self.w_v, self.w_o, self.num_heads)


class CGA(CMA):
    """CGA(Q, V) of eq. 6: ``σ(W_q^g Q + W_v^g CMA(Q,V) + b^g) ⊙ (W_q^i Q + W_v^i CMA(Q,V) + b^i)``.

    ``gate="shared"`` keeps W^i = W^g (the paper's setting); ``"separate"`` learns W_q^i, W_v^i.
    ``backend="fast"`` calls ``fian_fast.ops.cga``, which takes the path
    :func:`fian_fast._cga.cga_path` picks (fused Triton kernels on CUDA, its ATen counterpart on
    the CPU, the reference for float64; ``FIAN_FAST_CGA`` overrides); ``backend="reference"``
    always runs :func:`fian_fast.reference.cga.cga`.
    Both take the same weights.
    """

    def __init__(self, hidden_size: int, num_heads: int, gate: str = "shared", backend: str = "reference") -> None:
        super().__init__(hidden_size, num_heads)
        self.backend = backend
        self.w_gate_q, self.w_gate_v = _projection(hidden_size), _projection(hidden_size)
        self.b_gate = nn.Parameter(torch.zeros(hidden_size))
        self.b_info = nn.Parameter(torch.zeros(hidden_size))
        if gate == "separate":
            self.w_info_q, self.w_info_v = _projection(hidden_size), _projection(hidden_size)
        else:
            self.w_info_q = self.w_info_v = None

    def forward(self, query: torch.Tensor, key_value: torch.Tensor, query_lengths: torch.Tensor,
                key_lengths: torch.Tensor) -> torch.Tensor:
        """query [B, Lq, d_h], key_value [B, Lk, d_h], lengths int64 [B] -> [B, Lq, d_h],
        zero at padded query rows."""
        op = fast_op("cga", query.device) if self.backend == "fast" else None
        if op is not None:   # lengths were checked where they entered the model
            return op(query, key_value, query_lengths, key_lengths, self.weights, self.num_heads, validate=False)
        return reference_cga(query, key_value, query_lengths, key_lengths, self.weights, self.num_heads)

    @property
    def weights(self) -> CGAWeights:
        """The block's parameters as the :class:`~fian_fast._cga.CGAWeights` of the op."""
        return CGAWeights(self.w_q, self.w_k, self.w_v, self.w_o, self.w_gate_q, self.w_gate_v, self.b_gate,
                          self.b_info, self.w_info_q, self.w_info_v)


class SoftAttention(nn.Module):
    """Plain soft attention of FIAN-Soft: ``softmax(Q V^T / sqrt(d_h)) V``, one head, no
    projections and no gate (Table 4)."""

    def forward(self, query: torch.Tensor, key_value: torch.Tensor, query_lengths: torch.Tensor,
                key_lengths: torch.Tensor) -> torch.Tensor:
        """query [B, Lq, d_h], key_value [B, Lk, d_h], lengths int64 [B] (>= 1) -> [B, Lq, d_h]."""
        scores = query @ key_value.transpose(1, 2) / math.sqrt(query.shape[-1])
        keep = length_mask(key_lengths, key_value.shape[1])[:, None, :]
        scores = scores.masked_fill(~keep, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ key_value
        return out * length_mask(query_lengths, query.shape[1])[..., None].to(out.dtype)


def build_attention(kind: str, hidden_size: int, num_heads: int, gate: str, backend: str) -> nn.Module:
    """``kind`` in {"cga", "cma", "soft"} -> the attention block of a cross-modal encoder."""
    if kind == "cga":
        return CGA(hidden_size, num_heads, gate, backend)
    if kind == "cma":
        return CMA(hidden_size, num_heads)
    if kind == "soft":
        return SoftAttention()
    raise ValueError(f"build_attention: kind should be 'cga', 'cma' or 'soft', got {kind!r}")
