"""Oracle of :func:`fian_fast.ops.relu_dropout`: the inner activation of the FFN of eq. 7,
``Dropout(max(0, h))``, as ``nn.Sequential(..., nn.ReLU(), nn.Dropout(p), ...)`` computes it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["relu_dropout"]


def relu_dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(F.relu(h), p, training)``: max(0, h), then in training each entry zeroed with
    probability ``p`` and the rest scaled by 1 / (1 - p)."""
    return F.dropout(F.relu(h), p, training)
