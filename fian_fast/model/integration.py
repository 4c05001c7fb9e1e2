"""Video-enhanced integration (section 3.3.3, eq. 11-14) and the Table 4 fusions."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from .encoders import zero_padding

__all__ = ["VideoEnhancedIntegration", "Fusion", "fusion_width"]


def fusion_width(variant: str, hidden_size: int) -> int:
    """Channels of M for a variant: 2 d_h (full, concat), 4 d_h (matrix), d_h otherwise."""
    return {"full": 2, "concat": 2, "matrix": 4}.get(variant, 1) * hidden_size


class VideoEnhancedIntegration(nn.Module):
    """M = LayerNorm(V̂ + r ⊙ Q̂) over ``num_branches`` branches (eq. 11-14).

    * eq. 11: ``Q̂_i = W_i Q_i + b_i`` acts on the length axis, ``W_i ∈ R^{n_v × n_q}``, i.e. an
      ``nn.Linear(n_q, n_v)`` applied to ``Q_i`` transposed to [B, d_h, n_q]. The paper writes
      ``b_i ∈ R^{n_q}``; by shape the bias of ``W_i Q_i ∈ R^{n_v × d_h}`` is one value per
      output frame, so here ``b_i ∈ R^{n_v}`` (broadcast over channels). Padded words are zero
      before the projection, so their content never reaches M.
    * eq. 12: ``V̂ = [V1; V2]``, ``Q̂ = [Q̂1; Q̂2]`` concatenated along channels (2 d_h).
    * eq. 13: ``r = σ(Q̂ W^r + b^r)``, ``W^r ∈ R^{2d_h × 2d_h}``.
    * eq. 14: ``M = LayerNorm(V̂ + r ⊙ Q̂)``.

    With one branch (FIAN-VQMA / FIAN-QVMA) the same maths runs on that branch alone, width d_h.
    """

    def __init__(self, num_branches: int, hidden_size: int, max_query_length: int, num_frames: int) -> None:
        super().__init__()
        self.length_proj = nn.ModuleList(nn.Linear(max_query_length, num_frames) for _ in range(num_branches))
        width = num_branches * hidden_size
        self.filter = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, videos, queries, query_lengths: torch.Tensor, video_lengths: torch.Tensor) -> torch.Tensor:
        """videos: list of V_i [B, n_v, d_h]; queries: list of Q_i [B, n_q, d_h] (same order).
        Returns M [B, n_v, num_branches * d_h], zero at padded frames."""
        q_hat = [proj(zero_padding(q, query_lengths).transpose(1, 2)).transpose(1, 2)        # eq. 11
                 for proj, q in zip(self.length_proj, queries)]
        v_hat, q_hat = torch.cat(list(videos), dim=-1), torch.cat(q_hat, dim=-1)             # eq. 12
        r = torch.sigmoid(self.filter(q_hat))                                                # eq. 13
        return zero_padding(self.norm(v_hat + r * q_hat), video_lengths)                     # eq. 14


class Fusion(nn.Module):
    """Builds the integrated representation M from the iterative attention's outputs:

    * ``full``: eq. 11-14 on both branches; ``vqma`` / ``qvma``: on branch 2 / 1 alone;
    * ``concat``: ``M = [V1; V2]``; ``matrix``: ``M = [V1, V2, V1 - V2, V1 ⊙ V2]``;
    * ``vq``, ``cma``, ``soft``: ``M = V2``.
    """

    def __init__(self, variant: str, hidden_size: int, max_query_length: int, num_frames: int) -> None:
        super().__init__()
        self.variant = variant
        branches = {"full": 2, "vqma": 1, "qvma": 1}.get(variant, 0)
        self.integration = (VideoEnhancedIntegration(branches, hidden_size, max_query_length, num_frames)
                            if branches else None)

    def forward(self, reps: Dict[str, torch.Tensor], query_lengths: torch.Tensor,
                video_lengths: torch.Tensor) -> torch.Tensor:
        """reps: the dict of :class:`IterativeAttention`. Returns M [B, n_v, fusion_width]."""
        v = self.variant
        if v == "full":
            return self.integration([reps["V1"], reps["V2"]], [reps["Q1"], reps["Q2"]], query_lengths, video_lengths)
        if v == "vqma":
            return self.integration([reps["V2"]], [reps["Q2"]], query_lengths, video_lengths)
        if v == "qvma":
            return self.integration([reps["V1"]], [reps["Q1"]], query_lengths, video_lengths)
        if v == "concat":
            return torch.cat([reps["V1"], reps["V2"]], dim=-1)
        if v == "matrix":
            v1, v2 = reps["V1"], reps["V2"]
            return torch.cat([v1, v2, v1 - v2, v1 * v2], dim=-1)
        return reps["V2"]
