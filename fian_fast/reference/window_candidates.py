"""Pure-PyTorch oracle of :func:`fian_fast.ops.window_candidates` (section 3.4: multi-scale
sliding windows over the fixed-length frame sequence)."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["window_candidates", "check_windows"]


def check_windows(fn: str, num_frames, window_sizes, strides) -> tuple:
    """Validate the window configuration; returns ``(num_frames, sizes, strides)`` as ints.

    Raises ValueError naming the argument when ``num_frames < 1``, a window size is outside
    ``[1, num_frames]``, a stride is below 1, or the two lists differ in length.
    """
    if not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1:
        raise ValueError(f"{fn}: num_frames should be a positive int, got {num_frames!r}")
    sizes, steps = list(window_sizes), list(strides)
    if not sizes:
        raise ValueError(f"{fn}: window_sizes should hold at least one size, got {window_sizes!r}")
    if len(sizes) != len(steps):
        raise ValueError(f"{fn}: window_sizes and strides should have one length, got "
                         f"{len(sizes)} sizes {sizes} and {len(steps)} strides {steps}")
    for k in sizes:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= num_frames:
            raise ValueError(f"{fn}: window_sizes should be ints in [1, num_frames={num_frames}], got {sizes}")
    for s in steps:
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise ValueError(f"{fn}: strides should be ints >= 1, got {steps}")
    return num_frames, sizes, steps


def window_candidates(num_frames: int, window_sizes: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Candidate windows ``[start, end)`` of every scale, in frames.

    Scale ``s`` (window ``k_s``, stride ``θ_s``) contributes ``(num_frames - k_s) // θ_s + 1``
    windows starting at ``0, θ_s, 2θ_s, ...``; scales follow the order given, windows of a scale
    follow their start.

    Returns:
        Tensor[N, 2], float32, CPU, frames.
    """
    num_frames, sizes, steps = check_windows("window_candidates", num_frames, window_sizes, strides)
    parts = []
    for k, s in zip(sizes, steps):
        starts = torch.arange(0, num_frames - k + 1, s, dtype=torch.float32)
        parts.append(torch.stack([starts, starts + k], dim=1))
    return torch.cat(parts, dim=0)
