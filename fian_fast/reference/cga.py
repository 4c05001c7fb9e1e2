"""Pure-PyTorch oracle of the cross-modal guided attention (paper section 3.3.1, eq. 4-6).

Weights follow the ``nn.Linear`` convention: a projection ``W`` of shape [out, in] maps ``x`` to
``x @ W.T``. Lengths replace dense masks: query rows ``>= query_lengths[b]`` are padding (their
outputs are zero) and keys ``>= key_lengths[b]`` are never attended. A row with no key to attend
(key length 0) gets a zero attention output, never NaN. :class:`CGAWeights` (defined in
:mod:`fian_fast._cga`, with the rest of CGA's facts) is re-exported here.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .._cga import CGAWeights

__all__ = ["CGAWeights", "length_mask", "cross_modal_attention", "information_gate", "cga"]


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Bool [B, max_len], True at positions ``< lengths[b]``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _acc_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def cross_modal_attention(query: torch.Tensor, key_value: torch.Tensor, query_lengths: torch.Tensor,
                          key_lengths: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor,
                          w_o: torch.Tensor, num_heads: int) -> torch.Tensor:
    """CMA(Q, V) of eq. 4-5: ``n`` heads of scaled dot-product attention, concatenated, times W^O.

    Args:
        query: Tensor[B, Lq, d] — the modality that asks (Q).
        key_value: Tensor[B, Lk, d] — the modality attended to (V; keys and values).
        query_lengths, key_lengths: int Tensor[B], valid lengths.
        w_q, w_k, w_v: Tensor[d, d] — the heads' W_i^Q, W_i^K, W_i^V stacked along the output axis
            (head ``i`` owns rows ``i*d_k:(i+1)*d_k``, d_k = d / num_heads).
        w_o: Tensor[d, d] — W^O.
    Returns:
        Tensor[B, Lq, d] in the dtype of ``query``, computed in float32 (float64 for float64);
        zero at padded query rows and at rows with no valid key.
    """
    acc = _acc_dtype(query)
    B, Lq, d = query.shape
    Lk = key_value.shape[1]
    dk = d // num_heads
    q = query.to(acc) @ w_q.to(acc).t()
    k = key_value.to(acc) @ w_k.to(acc).t()
    v = key_value.to(acc) @ w_v.to(acc).t()
    q = q.view(B, Lq, num_heads, dk).transpose(1, 2)          # [B, H, Lq, dk]
    k = k.view(B, Lk, num_heads, dk).transpose(1, 2)          # [B, H, Lk, dk]
    v = v.view(B, Lk, num_heads, dk).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(dk)        # eq. 4, [B, H, Lq, Lk]
    key_ok = length_mask(key_lengths, Lk)[:, None, None, :]
    scores = scores.masked_fill(~key_ok, float("-inf"))
    has_key = (key_lengths > 0)[:, None, None, None]
    probs = torch.softmax(torch.where(has_key, scores, torch.zeros_like(scores)), dim=-1)
    probs = torch.where(has_key & key_ok, probs, torch.zeros_like(probs))
    heads = (probs @ v).transpose(1, 2).reshape(B, Lq, d)     # Concat(head_1..head_n)
    out = heads @ w_o.to(acc).t()                             # eq. 5
    out = out * length_mask(query_lengths, Lq)[..., None].to(acc)
    return out.to(query.dtype)


def information_gate(query: torch.Tensor, attended: torch.Tensor, w_gate_q: torch.Tensor, w_gate_v: torch.Tensor,
                     b_gate: torch.Tensor, b_info: torch.Tensor, w_info_q: Optional[torch.Tensor] = None,
                     w_info_v: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The information gate of eq. 6 on ``attended = CMA(Q, V)``.

    ``σ(W_q^g Q + W_v^g A + b^g) ⊙ (W_q^i Q + W_v^i A + b^i)``; with ``w_info_q``/``w_info_v``
    None the paper's shared projections W^i = W^g are used.
    """
    acc = _acc_dtype(query)
    q, a = query.to(acc), attended.to(acc)
    gate = q @ w_gate_q.to(acc).t() + a @ w_gate_v.to(acc).t()
    if w_info_q is None and w_info_v is None:
        info = gate
    elif w_info_q is None or w_info_v is None:
        raise ValueError("information_gate: w_info_q and w_info_v should be given together or not at all")
    else:
        info = q @ w_info_q.to(acc).t() + a @ w_info_v.to(acc).t()
    return (torch.sigmoid(gate + b_gate.to(acc)) * (info + b_info.to(acc))).to(query.dtype)


def cga(query: torch.Tensor, key_value: torch.Tensor, query_lengths: torch.Tensor, key_lengths: torch.Tensor,
        weights: CGAWeights, num_heads: int) -> torch.Tensor:
    """CGA(Q, V) of eq. 6 = information gate over CMA(Q, V) (eq. 4-5).

    Shapes as in :func:`cross_modal_attention`; ``weights`` a :class:`CGAWeights`. Returns
    Tensor[B, Lq, d], zero at padded query rows.
    """
    w = weights
    attended = cross_modal_attention(query, key_value, query_lengths, key_lengths, w.w_q, w.w_k, w.w_v, w.w_o,
                                     num_heads)
    out = information_gate(query, attended, w.w_gate_q, w.w_gate_v, w.b_gate, w.b_info, w.w_info_q, w.w_info_v)
    return out * length_mask(query_lengths, query.shape[1])[..., None].to(out.dtype)
