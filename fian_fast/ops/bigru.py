"""``fian_fast.ops.bigru``: the bidirectional GRU of eq. 1-3 over padded sequences as one opaque op.

Same signature and function as :func:`fian_fast.reference.bigru.bigru`. ``torch.compile`` sees
one node (``fian_fast::bigru``, a ``torch.library.custom_op`` with a fake kernel), never the
recurrence, so compile time does not grow with the steps; inside, eager and compiled alike, each
direction is one ``torch._VF.gru`` call: cuDNN on CUDA, ATen's RNN on the CPU.

No packing, no host read: the forward direction runs over the padded sequence (its output at a
valid step depends only on the steps before it); the backward direction runs forward over each
sample reversed within its own length (:func:`reverse_within_lengths`, lengths stay on the
device), and its output is reversed back. At every valid step the result equals a packed
``nn.GRU``'s. Padded input rows are replaced by zeros first, so their content (even NaN) reaches
neither the output nor a gradient; padded output rows are exactly zero.

Backward (``fian_fast::bigru_backward``, also opaque; the forward op saves its inputs and output):

* CUDA: **the forward is recomputed**: the two ``_VF.gru`` calls run again with autograd (cuDNN's
  training forward, which keeps what cuDNN's backward needs) and are differentiated (cuDNN's
  backward). The cost is one more cuDNN forward of the two directions per backward.
* CPU: from the saved output, nothing recomputed step by step (:func:`_gru_backward`): every step's
  gates at once from the inputs and the saved states (two matmuls), then one small matmul per step
  back through time, then the weight and input gradients at once (three matmuls).

``benchmarks/test_bench_compile.py`` times both against ``_VF.gru``'s own autograd on the CPU.

CUDA: each direction's four weights must reach cuDNN as views into one flat buffer laid out as
cuDNN wants it, or cuDNN copies them at every call and warns "RNN module weights are not part of
single contiguous chunk of memory". :func:`flatten_bigru_weights` arranges that (what
``nn.GRU.flatten_parameters`` does, one buffer per direction since each direction is its own
cuDNN call); :class:`fian_fast.model.encoders.BiGRU` calls it whenever its parameters move.

Autocast. CUDA: what an ``nn.GRU`` gets. cuDNN's autocast rule for RNNs casts the input and the
weights to float16 whatever the autocast dtype, the weights into one float16 buffer; this op's
autocast rule casts ``x`` to float16 and the op then computes under that rule: the output is
float16. CPU: the GRU computes in the weights' dtype (``x`` is cast to it), the output too.
"""
from __future__ import annotations

import contextlib
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from .._validation import check_lengths, check_same_device, check_tensor
from ..reference.bigru import BiGRUWeights
from ..reference.cga import length_mask

__all__ = ["bigru", "BiGRUWeights", "check_bigru_args", "reverse_within_lengths", "flatten_bigru_weights"]

#: cuDNN's RNN autocast rule (aten/src/ATen/cudnn/AutocastRNN.cpp) computes in float16 whatever
#: the autocast dtype: input and weights are cast to it, float64 never is.
AUTOCAST_DTYPE = torch.float16
#: the backward op's returns: the gradients of x and of the eight weights
_Grads = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """``x`` [B, L, C] with each sample's first ``lengths[b]`` rows reversed and its padding rows
    left in place (an involution: applying it twice gives ``x`` back)."""
    L = x.shape[1]
    t = torch.arange(L, device=x.device)[None, :]
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)         # [B, L]
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2]))


# ---- the computation (eager, inside the ops) -------------------------------------------------

def _autocast_cast(x: Tensor) -> bool:
    """``x`` is what this op's autocast rule made (float16 on CUDA): the weights may differ."""
    return x.is_cuda and x.dtype == AUTOCAST_DTYPE


def _bigru(x: Tensor, lengths: Tensor, weights: Sequence[Tensor], train: bool) -> Tensor:
    """The two ``_VF.gru`` calls. ``weights`` in ``x``'s dtype, or any with a float16 ``x`` on CUDA
    (the autocast case: computed under cuDNN's autocast rule, which casts the weights into one
    float16 buffer, as for an ``nn.GRU``)."""
    B, L, _ = x.shape
    if B == 0 or L == 0:
        return x.new_zeros((B, L, 2 * weights[1].shape[1]))
    if x.dtype != weights[0].dtype:
        with torch.autocast("cuda", dtype=AUTOCAST_DTYPE):
            return _bigru(x, lengths, weights, train)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    valid = length_mask(lengths, L)[..., None]                                   # [B, L, 1]
    x = torch.where(valid, x, zero)
    h0 = x.new_zeros((1, B, weights[1].shape[1]))
    # _VF.gru(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    forward = torch._VF.gru(x, h0, list(weights[:4]), True, 1, 0.0, train, False, True)[0]
    backward = torch._VF.gru(reverse_within_lengths(x, lengths), h0, list(weights[4:]), True, 1, 0.0, train,
                             False, True)[0]
    out = torch.cat([forward, reverse_within_lengths(backward, lengths)], dim=-1)
    return torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))


@contextlib.contextmanager
def _autograd_inside_op():
    """Autograd on inside a custom op's kernel, which the dispatcher runs below autograd (with the
    autograd dispatch keys excluded): the backward op differentiates its recomputed forward."""
    with torch.enable_grad(), torch._C._SetExcludeDispatchKeyGuard(torch._C.DispatchKey.AutogradFunctionality, False):
        yield


def _unaliased(outputs: List[Tensor], inputs: Sequence[Tensor]) -> List[Tensor]:
    """``outputs`` with a copy of each that shares memory with an input or an earlier output (a
    custom op's outputs may not alias; cuDNN returns the weight gradients as views of one buffer)."""
    seen = {t.untyped_storage().data_ptr() for t in inputs}
    result = []
    for t in outputs:
        key = t.untyped_storage().data_ptr()
        result.append(t.clone() if key in seen else t)
        seen.add(key)
    return result


# Inductor's on-disk caches keep compiled graphs that call these ops by name with the schema they
# were traced against (and the tensors saved for the backward then): a change of schema needs new
# names, or graphs cached before it fail when they run.
@torch.library.custom_op("fian_fast::bigru", mutates_args=())
def _bigru_op(x: Tensor, lengths: Tensor, weights: List[Tensor]) -> Tensor:
    """fian_fast::bigru — [B, L, 2H], zero at rows >= lengths[b]."""
    check_bigru_args("fian_fast::bigru", x, lengths, weights, autocast=_autocast_cast(x))
    return _bigru(x, lengths, weights, train=False)


def _gru_backward(grad: Tensor, x: Tensor, h: Tensor, weights: Sequence[Tensor]) -> List[Tensor]:
    """Gradients of one GRU direction run forward from a zero state over ``x`` [B, L, C], given its
    states ``h`` [B, L, H] and ``grad`` [B, L, H] w.r.t. them, both zero wherever a step is padding
    (padding lies after each sample's valid steps, so it never reaches them). Returns
    ``[grad_x, grad_weight_ih, grad_weight_hh, grad_bias_ih, grad_bias_hh]``.

    With ``g = [r; z; n]`` the gates of the step from ``h' = h_{t-1}`` (the reference's cell) and
    ``dh`` the gradient reaching ``h_t`` (its own plus the next step's), the step's gradients are
    linear in ``dh``: ``d(W_h h' + b_h) = dh * A_t``, ``d(W_i x_t + b_i) = dh * A'_t`` with
    ``A = [(1-z)(1-n^2)(W_hn h' + b_hn) r(1-r), (h'-n) z(1-z), (1-z)(1-n^2) r]`` and ``A'`` the same
    but ``(1-z)(1-n^2)`` last, and ``dh' = dh * z + d(W_h h' + b_h) W_h``: only that last product
    walks through time."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    B, L, H = h.shape
    h_prev = torch.cat([h.new_zeros((B, 1, H)), h[:, :-1]], dim=1)                 # [B, L, H]
    gi = (x @ weight_ih.T + bias_ih).view(B, L, 3, H)
    gh = (h_prev @ weight_hh.T + bias_hh).view(B, L, 3, H)
    r, z = torch.sigmoid(gi[:, :, 0] + gh[:, :, 0]), torch.sigmoid(gi[:, :, 1] + gh[:, :, 1])
    n = torch.tanh(gi[:, :, 2] + r * gh[:, :, 2])
    dn_pre = (1 - z) * (1 - n * n)
    dr_pre = dn_pre * gh[:, :, 2] * r * (1 - r)
    dz_pre = (h_prev - n) * z * (1 - z)
    coef_h = torch.stack([dr_pre, dz_pre, dn_pre * r], dim=2)                      # [B, L, 3, H]
    d_gh = torch.empty_like(coef_h)
    d_h = torch.empty_like(h)
    carry = h.new_zeros((B, H))
    for t in range(L - 1, -1, -1):
        dh = grad[:, t] + carry
        d_h[:, t] = dh
        d_gh[:, t] = dh[:, None] * coef_h[:, t]
        carry = torch.addmm(dh * z[:, t], d_gh[:, t].view(B, 3 * H), weight_hh)
    d_gi = d_gh.clone()
    d_gi[:, :, 2] = d_h * dn_pre
    d_gi, d_gh = d_gi.view(B * L, 3 * H), d_gh.view(B * L, 3 * H)
    grad_x = (d_gi @ weight_ih).view(B, L, -1)
    return [grad_x, d_gi.T @ x.reshape(B * L, -1), d_gh.T @ h_prev.reshape(B * L, H), d_gi.sum(0), d_gh.sum(0)]


def _recomputing_backward(grad: Tensor, x: Tensor, lengths: Tensor, weights: Sequence[Tensor]) -> List[Tensor]:
    """The nine gradients by running the forward again with autograd and differentiating it."""
    with _autograd_inside_op():
        x = x.detach().requires_grad_()
        weights = [w.detach().requires_grad_() for w in weights]
        recomputed = _bigru(x, lengths, weights, train=True)
        grads = torch.autograd.grad(recomputed, [x] + weights, grad)
    return _unaliased(list(grads), [grad, x, lengths, *weights])


@torch.library.custom_op("fian_fast::bigru_backward", mutates_args=())
def _bigru_backward_op(grad: Tensor, x: Tensor, lengths: Tensor, out: Tensor, weights: List[Tensor]) -> _Grads:
    """fian_fast::bigru_backward — ``(grad_x, grad_weight_ih, ..., grad_bias_hh_reverse)`` from the
    op's inputs and output ``out``. This kernel (CUDA, and any device but the CPU) recomputes the
    forward (:func:`_recomputing_backward`); the CPU's is :func:`_bigru_backward_cpu`. Nine
    tensors, not a list: inductor's C++ wrapper takes tensor returns only."""
    _check_backward_args(grad, x, lengths, out, weights)
    if x.shape[0] == 0 or x.shape[1] == 0:
        return _zero_grads(x, weights)
    return tuple(_unaliased(_recomputing_backward(grad, x, lengths, weights), [out]))


@_bigru_backward_op.register_kernel("cpu")
def _bigru_backward_cpu(grad, x, lengths, out, weights):
    """CPU kernel of fian_fast::bigru_backward: :func:`_gru_backward` per direction, the backward one
    in the frame where each sample is reversed within its length."""
    _check_backward_args(grad, x, lengths, out, weights)
    if x.shape[0] == 0 or x.shape[1] == 0:
        return _zero_grads(x, weights)
    H = weights[1].shape[1]
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    valid = length_mask(lengths, x.shape[1])[..., None]
    x = torch.where(valid, x, zero)
    grad = torch.where(valid, grad, zero)
    forward = _gru_backward(grad[..., :H], x, out[..., :H], weights[:4])
    backward = _gru_backward(*(reverse_within_lengths(t, lengths) for t in (grad[..., H:], x, out[..., H:])),
                             weights[4:])
    grad_x = torch.where(valid, forward[0] + reverse_within_lengths(backward[0], lengths), zero)
    return (grad_x, *forward[1:], *backward[1:])


def _zero_grads(x: Tensor, weights: Sequence[Tensor]) -> _Grads:
    """The gradients of an empty batch or of zero steps."""
    return tuple(torch.zeros_like(t) for t in [x, *weights])


def _check_backward_args(grad, x, lengths, out, weights) -> None:
    fn = "fian_fast::bigru_backward"
    check_bigru_args(fn, x, lengths, weights, autocast=_autocast_cast(x))
    shape = (x.shape[0], x.shape[1], 2 * weights[1].shape[1])
    for name, t in (("grad", grad), ("out", out)):
        check_tensor(fn, name, t, dim=3, shape=shape)
        if t.dtype != x.dtype or t.device != x.device:
            raise ValueError(f"{fn}: {name} should be {x.dtype} on {x.device} like x, got {t.dtype} on {t.device}")


@_bigru_op.register_fake
def _bigru_fake(x, lengths, weights):
    return x.new_empty((x.shape[0], x.shape[1], 2 * weights[1].shape[1]))


@_bigru_backward_op.register_fake
def _bigru_backward_fake(grad, x, lengths, out, weights):
    return tuple([torch.empty_like(x)] + [torch.empty_like(w) for w in weights])


def _setup_context(ctx, inputs, output):
    x, lengths, weights = inputs
    ctx.save_for_backward(x, lengths, output, *weights)


def _backward(ctx, grad):
    x, lengths, out, *weights = ctx.saved_tensors
    grad_x, *grad_weights = torch.ops.fian_fast.bigru_backward(grad, x, lengths, out, weights)
    return grad_x, None, grad_weights


_bigru_op.register_autograd(_backward, setup_context=_setup_context)


def _autocast_rule(device_type: str):
    """The autocast kernel of ``fian_fast::bigru`` on ``device_type``: ``x`` cast to the dtype the
    GRU computes in (float16 on CUDA, the weights' on the CPU; float64 never), the weights left
    as they are (on CUDA the op casts them into one buffer), then the op with autocast off."""
    key = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, "Autocast" + device_type.upper()))

    def kernel(keyset, x, lengths, weights):
        dtype = AUTOCAST_DTYPE if device_type == "cuda" else weights[0].dtype
        if x.is_floating_point() and x.dtype != torch.float64 and x.dtype != dtype:
            x = x.to(dtype)
        with torch._C._ExcludeDispatchKeyGuard(key):
            return torch.ops.fian_fast.bigru.default(x, lengths, weights)

    return kernel


_LIB = torch.library.Library("fian_fast", "FRAGMENT")
for _device in ("cuda", "cpu"):
    _LIB.impl("bigru", _autocast_rule(_device), "Autocast" + _device.upper(), with_keyset=True)


# ---- flat cuDNN weights ------------------------------------------------------------------------

def flatten_bigru_weights(weights: Sequence[Tensor], input_size: int) -> bool:
    """Make each direction's four weights views into one flat buffer in cuDNN's layout, in place
    (``torch._cudnn_rnn_flatten_weight``, as ``nn.GRU.flatten_parameters``), so cuDNN uses them
    without a copy. Returns False, changing nothing, unless all eight are CUDA tensors of one dtype
    that cuDNN takes and none aliases another."""
    w = list(weights)
    if len(w) != 8 or not all(isinstance(t, Tensor) for t in w):
        return False
    dtype = w[0].dtype
    if not all(t.is_cuda and t.dtype == dtype and torch.backends.cudnn.is_acceptable(t) for t in w):
        return False
    if len({t.data_ptr() for t in w}) != len(w):
        return False
    if not torch._use_cudnn_rnn_flatten_weight():
        return False
    from torch.backends.cudnn import rnn

    hidden_size = w[1].shape[1]
    with torch.cuda.device_of(w[0]), torch.no_grad():
        for direction in (w[:4], w[4:]):
            # (weights, weights per layer, input_size, mode, hidden_size, proj_size, num_layers,
            #  batch_first, bidirectional): one unidirectional layer, as each _VF.gru call sees it
            torch._cudnn_rnn_flatten_weight(direction, 4, input_size, rnn.get_cudnn_mode("GRU"), hidden_size, 0, 1,
                                            True, False)
    return True


# ---- entry point -------------------------------------------------------------------------------

def check_bigru_args(fn: str, x, lengths, weights, validate: bool = False, autocast: bool = False) -> BiGRUWeights:
    """Metadata of a BiGRU call (values only with ``validate``): ``x`` [B, L, C] floating,
    ``lengths`` int [B] (in [0, L]), eight weights of an ``nn.GRU`` layer pair ([3H, C], [3H, H],
    [3H], [3H], twice) of one floating dtype, all on one device. The weights have ``x``'s dtype
    unless ``autocast`` (an ``x`` that CUDA autocast casts, or has cast, to float16)."""
    check_tensor(fn, "x", x, dim=3, floating=True)
    B, L, C = x.shape
    check_lengths(fn, "lengths", lengths, B, L, min_len=0, validate=validate)
    if not isinstance(weights, (tuple, list)) or len(weights) != len(BiGRUWeights._fields):
        got = f"{len(weights)} items" if isinstance(weights, (tuple, list)) else type(weights).__name__
        raise ValueError(f"{fn}: weights should be a BiGRUWeights of 8 tensors, got {got}")
    w = BiGRUWeights(*weights)
    H = check_tensor(fn, "weights.weight_hh", w.weight_hh, dim=2).shape[1]
    dtype = w.weight_hh.dtype if autocast else x.dtype
    for name, t in w._asdict().items():
        shape = {"weight_ih": (3 * H, C), "weight_hh": (3 * H, H)}.get(name.replace("_reverse", ""), (3 * H,))
        check_tensor(fn, f"weights.{name}", t, dim=len(shape), shape=shape, floating=True)
        if t.dtype != dtype:
            of = "weights.weight_hh" if autocast else "x"
            raise ValueError(f"{fn}: weights.{name} should have the dtype of {of} ({dtype}), got {t.dtype}")
    check_same_device(fn, x=x, lengths=lengths, **{f"weights.{k}": v for k, v in w._asdict().items()})
    return w


def bigru(x: Tensor, lengths: Tensor, weights: Sequence[Tensor], *, validate: bool = True) -> Tensor:
    """``[h^f; h^b]`` of a one-layer bidirectional GRU over padded sequences (eq. 1-3).

    Args:
        x: Tensor[B, L, C], float16/bfloat16/float32/float64 (cuDNN takes float16, float32 and
            float64 on CUDA).
        lengths: int Tensor[B] on the device of ``x``, valid steps in [0, L]; rows
            ``>= lengths[b]`` of ``x`` are padding, whatever they hold.
        weights: :class:`BiGRUWeights` (an ``nn.GRU``'s parameters in its order), dtype and
            device of ``x``; on CUDA best views into flat buffers (:func:`flatten_bigru_weights`).
        validate: check that the lengths lie in [0, L] (one host read). ``False`` for callers
            whose lengths were checked where they entered (the model): only metadata is checked.
    Returns:
        Tensor[B, L, 2H], dtype of ``x`` (float16 under CUDA autocast, as ``nn.GRU``): forward
        then backward state, zero at rows ``>= lengths[b]``. Differentiable w.r.t. ``x`` and every
        weight.
    """
    autocast = (isinstance(x, Tensor) and x.device.type in ("cpu", "cuda")
                and torch.is_autocast_enabled(x.device.type))
    w = check_bigru_args("bigru", x, lengths, weights, validate, autocast)
    return torch.ops.fian_fast.bigru(x, lengths, list(w))
