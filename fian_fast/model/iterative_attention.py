"""Cross-modal encoder (eq. 7-8) and the symmetrical iterative attention (eq. 9-10)."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ._dispatch import fast_op
from .cga import build_attention
from .encoders import zero_padding

__all__ = ["CrossModalEncoder", "IterativeAttention"]


class CrossModalEncoder(nn.Module):
    """Encoder(Q, V) = FFN(CGA(Q, V)) of eq. 8, with the shortcuts and LayerNorms the paper
    omits from the equation but names (Transformer encoder style)::

        X   = LayerNorm(Q + Dropout(CGA(Q, V)))
        out = LayerNorm(X + Dropout(FFN(X)))       FFN(X) = max(0, X W1 + b1) W2 + b2   (eq. 7)

    A Q-V encoder: ``query`` asks, ``key_value`` is attended to; the output is the V-aware Q.
    ``attention`` picks the block: "cga" (paper), "cma" or "soft" (Table 4 ablations).

    ``ffn`` is ``nn.Sequential(Linear, ReLU, Dropout, Linear)`` on both backends (its parameters
    are ``ffn.0.*`` and ``ffn.3.*``); ``backend="fast"`` runs its ReLU and Dropout as
    :func:`fian_fast.ops.relu_dropout` (same function, same random stream, a backward that keeps
    only the output).
    """

    def __init__(self, hidden_size: int, num_heads: int, ffn_size: int, dropout: float,
                 attention: str = "cga", gate: str = "shared", backend: str = "reference") -> None:
        super().__init__()
        self.attention = build_attention(attention, hidden_size, num_heads, gate, backend)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(nn.Linear(hidden_size, ffn_size), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_size, hidden_size))
        self.norm2 = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.backend = backend

    def forward(self, query: torch.Tensor, key_value: torch.Tensor, query_lengths: torch.Tensor,
                key_lengths: torch.Tensor) -> torch.Tensor:
        """query [B, Lq, d_h], key_value [B, Lk, d_h], lengths int64 [B] -> [B, Lq, d_h],
        zero at padded query rows."""
        x = self.norm1(query + self.dropout(self.attention(query, key_value, query_lengths, key_lengths)))
        x = self.norm2(x + self.dropout(self._ffn(x)))
        return zero_padding(x, query_lengths)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        """FFN(X) = max(0, X W1 + b1) W2 + b2 of eq. 7, with the dropout between the two layers."""
        op = fast_op("relu_dropout", x.device) if self.backend == "fast" else None
        if op is None:
            return self.ffn(x)
        first, _, dropout, second = self.ffn
        return second(op(first(x), dropout.p, self.training))


class IterativeAttention(nn.Module):
    """The symmetrical iterative attention of section 3.3 and its Table 4 reductions.

    Branch 1, query-video (eq. 9):  Q1 = Enc_qv(Q, V),  V1 = Enc_vq(V, Q1).
    Branch 2, video-query (eq. 10): V2 = Enc_vq(V, Q),  Q2 = Enc_qv(Q, V2).
    Four encoders, each with its own weights. ``variant`` decides which are built:

    * ``full``: both branches -> {Q1, V1, Q2, V2};
    * ``concat``, ``matrix``: both branches up to the video -> {Q1, V1, V2} (Q2 is never read);
    * ``qvma``: branch 1 -> {Q1, V1};  ``vqma``: branch 2 -> {Q2, V2};
    * ``vq`` / ``cma`` / ``soft``: one V-Q encoder with CGA / CMA / soft attention -> {V2}.
    """

    def __init__(self, variant: str, hidden_size: int, num_heads: int, ffn_size: int, dropout: float,
                 gate: str = "shared", backend: str = "reference") -> None:
        super().__init__()
        self.variant = variant

        def encoder(attention: str = "cga") -> CrossModalEncoder:
            return CrossModalEncoder(hidden_size, num_heads, ffn_size, dropout, attention, gate, backend)

        self.branch1 = variant in ("full", "concat", "matrix", "qvma")
        self.q2 = variant in ("full", "vqma")    # concat / matrix never read Q2: no dead encoder
        if self.branch1:
            self.q1_encoder, self.v1_encoder = encoder(), encoder()
        self.v2_encoder = encoder({"soft": "soft", "cma": "cma"}.get(variant, "cga")) if variant != "qvma" else None
        if self.q2:
            self.q2_encoder = encoder()

    def forward(self, h_q: torch.Tensor, h_v: torch.Tensor, query_lengths: torch.Tensor,
                video_lengths: torch.Tensor) -> Dict[str, torch.Tensor]:
        """h_q [B, n_q, d_h], h_v [B, n_v, d_h] -> dict of the representations the variant makes:
        "Q1", "Q2" [B, n_q, d_h] and "V1", "V2" [B, n_v, d_h], zero at padding."""
        out = {}
        if self.branch1:
            out["Q1"] = self.q1_encoder(h_q, h_v, query_lengths, video_lengths)              # eq. 9
            out["V1"] = self.v1_encoder(h_v, out["Q1"], video_lengths, query_lengths)
        if self.v2_encoder is not None:
            out["V2"] = self.v2_encoder(h_v, h_q, video_lengths, query_lengths)              # eq. 10
        if self.q2:
            out["Q2"] = self.q2_encoder(h_q, out["V2"], query_lengths, video_lengths)
        return out
