"""``fian_fast.ops.window_score``: scores and boundary offsets of every multi-scale candidate
window (section 3.4), forward and backward as compiled ops."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .._extension import load_ops, register_autograd, register_fake
from .._validation import check_tensor, check_windows

__all__ = ["window_score"]


def window_score(features: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 window_sizes: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Score logit and offsets ``(δs, δe)`` of every candidate window.

    Equals ``F.conv1d(features.transpose(1, 2), weights[s], biases[s], stride=strides[s])`` per
    scale, concatenated in the candidate order of :func:`window_candidates`. The CPU kernel runs
    one GEMM per scale on a blocked view of the features (no im2col); the CUDA kernel scores all
    scales in one launch. Differentiable w.r.t. features, weights and biases.

    Args:
        features: Tensor[B, T, C], float16/bfloat16/float32/float64, one row per frame.
        weights: per scale a Tensor[3, C, k_s] (Conv1d layout), cast to the dtype of features.
        biases: per scale a Tensor[3], cast to the dtype of features.
        window_sizes: ``k_s`` per scale, frames in [1, T].
        strides: ``θ_s`` per scale, frames >= 1.
    Returns:
        Tensor[B, N, 3], dtype of features: channel 0 the score logit (cs = sigmoid, eq. 15),
        channels 1..2 the offsets in frames (eq. 17). Accumulation is float32 for half types.
    """
    fn = "window_score"
    check_tensor(fn, "features", features, dim=3, floating=True)
    if features.shape[1] < 1:
        raise ValueError(f"{fn}: features should have at least one frame, got shape {tuple(features.shape)}")
    _, sizes, steps = check_windows(fn, int(features.shape[1]), window_sizes, strides)
    weights, biases = list(weights), list(biases)
    if len(weights) != len(sizes) or len(biases) != len(sizes):
        raise ValueError(f"{fn}: weights and biases should hold one tensor per scale ({len(sizes)}), got "
                         f"{len(weights)} weights and {len(biases)} biases")
    C = features.shape[2]
    for s, (w, b, k) in enumerate(zip(weights, biases, sizes)):
        check_tensor(fn, f"weights[{s}]", w, dim=3, shape=(3, C, k), floating=True)
        check_tensor(fn, f"biases[{s}]", b, dim=1, shape=(3,), floating=True)
        if w.device != features.device or b.device != features.device:
            raise ValueError(f"{fn}: weights[{s}] and biases[{s}] should be on {features.device}, got "
                             f"{w.device} and {b.device}")
    load_ops()
    dt = features.dtype
    weights = [w if w.dtype == dt else w.to(dt) for w in weights]
    biases = [b if b.dtype == dt else b.to(dt) for b in biases]
    return torch.ops.fian_fast.window_score(features, weights, biases, sizes, steps)


@register_fake("fian_fast::window_score")
def _window_score_fake(features, weights, biases, window_sizes, strides):
    T = features.shape[1]
    n = sum((T - k) // s + 1 for k, s in zip(window_sizes, strides))
    return features.new_empty((features.shape[0], n, 3))


def _weight_grad_like(w, k: int, stride: int, features) -> torch.Tensor:
    """An empty tensor with the shape and strides of the kernels' weight gradient: the CUDA kernel
    writes a contiguous one; the CPU kernel returns its blocked GEMM's result, [g·C, 3·m] viewed
    back as [3, C, k] (csrc/ops/cpu/window_score_kernel.cpp), whose strides follow from that chain."""
    if features.device.type != "cpu" or features.shape[0] == 0:
        return w.new_empty(w.shape)
    C, g = w.shape[1], math.gcd(k, stride)
    m = k // g
    return w.new_empty((g * C, 3 * m)).reshape(g, C, 3, m).permute(2, 1, 3, 0).reshape(3, C, k)


@register_fake("fian_fast::window_score_backward")
def _window_score_backward_fake(grad, features, weights, window_sizes, strides):
    return (features.new_empty(features.shape),
            [_weight_grad_like(w, k, s, features) for w, k, s in zip(weights, window_sizes, strides)],
            [features.new_empty((3,)) for _ in weights])


def _setup_context(ctx, inputs, output):
    features, weights, _biases, window_sizes, strides = inputs
    ctx.save_for_backward(features, *weights)
    ctx.window_sizes, ctx.strides = list(window_sizes), list(strides)


def _backward(ctx, grad):
    features, *weights = ctx.saved_tensors
    dx, dw, db = torch.ops.fian_fast.window_score_backward(grad, features, weights, ctx.window_sizes, ctx.strides)
    return dx, list(dw), list(db), None, None


register_autograd("fian_fast::window_score", _backward, setup_context=_setup_context)
