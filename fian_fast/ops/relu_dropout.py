"""``fian_fast.ops.relu_dropout``: ``Dropout(max(0, h))``, the activation inside the FFN of eq. 7,
with a backward that keeps one tensor.

Same signature and function as :func:`fian_fast.reference.relu_dropout.relu_dropout`; the forward
is the same two ATen ops (same random stream: with one seed the outputs are bitwise equal), only
the backward differs in what it keeps.

Why. Autograd through ``nn.ReLU`` then ``nn.Dropout`` keeps the ReLU's output and the dropout's
bool mask. Under ``torch.compile`` the partitioner also keeps a bool ``h > 0`` mask, recomputed in
the loss kernel, even when the float it comes from is saved, and writing bool masks is slow in
inductor's CPU code: on the TACoS preset (CPU, one thread) the FFN masks alone made the compiled
step no faster than eager. Here the backward works from the output only:

    y = Dropout(max(0, h))            dL/dh = dL/dy * scale   where y > 0,   0 elsewhere

with ``scale = 1 / (1 - p)`` in training (rounded as ATen's dropout rounds it on that device, see
:func:`_scale`), 1 outside it, and no gradient at all for ``p = 1``. This is exact, not an
approximation: ``y > 0`` exactly where ``h > 0`` and the entry was kept (``scale >= 1``, so a
positive ``h`` never rounds to zero), and ATen's own backward is ``grad * mask * scale`` followed
by the ReLU's ``threshold_backward``, the same product. The gradients are bitwise equal to the
reference's for non-NaN ``h`` (at a NaN entry of ``h`` this one gives 0, ATen's passes the grad).

The backward is one opaque ``torch.library`` op (``fian_fast::relu_dropout_backward``, with a fake
kernel): written as plain tensor ops, the partitioner re-derives and saves the mask anyway.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_fraction, check_like, check_tensor

__all__ = ["relu_dropout"]

_BACKWARD = "fian_fast::relu_dropout_backward"


def _scale(grad: Tensor, p: float):
    """The factor the forward's dropout gave the kept entries, as its backward multiplies by it.

    CPU: ATen's dropout there is composite, ``input * noise`` with ``noise = bernoulli(1 - p) /
    (1 - p)`` in the input's dtype, so the factor is ``1 / (1 - p)`` rounded to that dtype (by the
    same division). CUDA: the fused ``native_dropout``, whose backward multiplies by the double
    ``1 / (1 - p)`` in the compute type, as a tensor-times-Python-float product does."""
    if grad.device.type == "cpu":
        return torch.ones((), dtype=grad.dtype).div_(1.0 - p)
    return 1.0 / (1.0 - p)


@torch.library.custom_op("fian_fast::relu_dropout_backward", mutates_args=())
def _relu_dropout_backward(grad: Tensor, out: Tensor, p: float) -> Tensor:
    """dL/dh from dL/dy and y = Dropout_p(max(0, h)): ``grad / (1 - p)`` where ``out > 0``, else 0.
    ``p`` is the probability the forward applied (0 outside training)."""
    check_tensor(_BACKWARD, "grad", grad, floating=True)
    check_like(_BACKWARD, "grad", grad, out=out)
    check_fraction(_BACKWARD, "p", p)
    zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
    if p == 0.0:
        return torch.where(out > 0, grad, zero)
    if p == 1.0:
        return torch.zeros_like(grad)
    return torch.where(out > 0, grad * _scale(grad, p), zero)


@_relu_dropout_backward.register_fake
def _(grad: Tensor, out: Tensor, p: float) -> Tensor:
    check_like(_BACKWARD, "grad", grad, out=out)
    return torch.empty_like(grad)


class _ReluDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, p: float, training: bool) -> Tensor:
        y = F.dropout(torch.relu(h), p, training)
        ctx.p = p if training else 0.0
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        return torch.ops.fian_fast.relu_dropout_backward(grad, y, ctx.p), None, None


def relu_dropout(h: Tensor, p: float, training: bool) -> Tensor:
    """``Dropout(max(0, h))`` with probability ``p`` in [0, 1], applied when ``training``; any shape
    and floating dtype. Equal to :func:`fian_fast.reference.relu_dropout.relu_dropout`."""
    fn = "fian_fast.ops.relu_dropout"
    check_tensor(fn, "h", h, floating=True)
    p = check_fraction(fn, "p", p)
    if not isinstance(training, bool):
        raise ValueError(f"{fn}: training should be a bool, got {training!r}")
    return _ReluDropout.apply(h, p, training)
