"""The candidate windows of section 3.4: multi-scale sliding windows over the fixed-length frame
sequence, in the order of ``window_score``'s outputs (the compiled kernels lay scales out the same
way, csrc/ops/window_plan.h). A few ``arange``s built once per model, so there is no compiled op."""
from __future__ import annotations

from typing import Sequence

import torch

from .._validation import check_windows

__all__ = ["window_candidates"]


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
