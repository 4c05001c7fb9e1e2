"""``fian_fast.ops.window_candidates``: the multi-scale candidate windows of section 3.4."""
from __future__ import annotations

from typing import Sequence

import torch

from .._extension import load_ops, register_fake
from .._validation import check_windows

__all__ = ["window_candidates"]


def window_candidates(num_frames: int, window_sizes: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Candidate windows ``[start, end)`` of every scale, in frames.

    Scale ``s`` (window ``k_s``, stride ``θ_s``) contributes ``(num_frames - k_s) // θ_s + 1``
    windows starting at ``0, θ_s, 2θ_s, ...``; scales follow the order given, windows of a scale
    follow their start (the candidate order of :func:`window_score`).

    Args:
        num_frames: T >= 1, frames of the fixed-length sequence.
        window_sizes: ``k_s`` per scale, ints in [1, T].
        strides: ``θ_s`` per scale, ints >= 1, as many as ``window_sizes``.
    Returns:
        Tensor[N, 2], float32, CPU, frames.
    """
    num_frames, sizes, steps = check_windows("window_candidates", num_frames, window_sizes, strides)
    load_ops()
    return torch.ops.fian_fast.window_candidates(num_frames, sizes, steps)


@register_fake("fian_fast::window_candidates")
def _window_candidates_fake(num_frames, window_sizes, strides):
    n = sum((num_frames - k) // s + 1 for k, s in zip(window_sizes, strides))
    return torch.empty((n, 2), dtype=torch.float32)
