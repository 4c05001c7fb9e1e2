"""``fian_fast.ops.bigru`` (eq. 1-3): the opaque BiGRU op against its step-by-step reference and a
packed ``nn.GRU``, forward and backward; padding, edge lengths, opcheck, gradcheck, argument
errors; one node of a compiled graph whatever the length; autocast; on a GPU cuDNN's flat weights
(no per-call copy), CUDA-graph capture and cuDNN's autocast rule."""
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fian_fast._host_reads import count_host_reads
from fian_fast.model.encoders import BiGRU
from fian_fast.ops import BiGRUWeights, bigru
from fian_fast.ops.bigru import _bigru_backward_cpu, _recomputing_backward
from fian_fast.reference.bigru import bigru as bigru_reference

from compiled_graphs import aot_graphs, targets

# float64: the same recurrence in another order of operations; float32: a few ulps of that order
TOL = {torch.float64: dict(atol=1e-12, rtol=1e-12), torch.float32: dict(atol=1e-6, rtol=1e-5)}
DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
LENGTHS = pytest.mark.parametrize("lengths", [[17, 1, 9, 17, 4], [1], [3, 3], [1, 1, 1], [113, 60]],
                                  ids=["B5-L17", "B1-L1", "B2-equal", "B3-all-L1", "B2-L113"])
CONTIGUOUS_CHUNK_WARNING = "not part of single contiguous chunk of memory"


def make(lengths, C=6, H=5, dtype=torch.float64, device="cpu", pad=7.0, seed=0):
    """x [B, L, C] with ``pad`` in its padding rows, int64 lengths, BiGRUWeights of nn.GRU's init."""
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    x = torch.randn(len(lengths), L, C, generator=g, dtype=dtype)
    lengths = torch.tensor(lengths)
    x[torch.arange(L)[None, :] >= lengths[:, None]] = pad
    bound = H ** -0.5
    shapes = [(3 * H, C), (3 * H, H), (3 * H,), (3 * H,)] * 2
    w = BiGRUWeights(*((torch.rand(s, generator=g, dtype=dtype) * 2 - 1) * bound for s in shapes))
    return x.to(device), lengths.to(device), BiGRUWeights(*(t.to(device) for t in w))


def packed(x, lengths, w):
    """A packed nn.GRU holding ``w``: its output [B, L, 2H] (zero padding) and the module."""
    gru = torch.nn.GRU(x.shape[2], w.weight_hh.shape[1], batch_first=True, bidirectional=True).to(x.device, x.dtype)
    with torch.no_grad():
        for p, t in zip(gru._flat_weights, w):
            p.copy_(t)
    seq = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = pad_packed_sequence(gru(seq)[0], batch_first=True, total_length=x.shape[1])
    return out, gru


def valid_rows(lengths, L):
    return (torch.arange(L, device=lengths.device)[None, :] < lengths[:, None])[..., None]


def leaves(*tensors):
    return [t.detach().clone().requires_grad_() for t in tensors]


# ---- the reference is the packed nn.GRU ---------------------------------------------------------

@DTYPES
@LENGTHS
def test_reference_matches_packed_gru(dtype, lengths):
    x, lengths, w = make(lengths, dtype=dtype)
    want, gru = packed(x, lengths, w)
    torch.testing.assert_close(bigru_reference(x, lengths, w), want, **TOL[dtype])


# ---- the op is the reference, and the packed nn.GRU ---------------------------------------------

@DTYPES
@LENGTHS
def test_op_matches_reference_and_packed_gru_forward_and_backward(dtype, lengths):
    x, lengths, w = make(lengths, dtype=dtype)
    valid = valid_rows(lengths, x.shape[1])
    grad = torch.randn(x.shape[0], x.shape[1], 2 * w.weight_hh.shape[1], dtype=dtype)
    x_op, *w_op = leaves(x, *w)
    out = bigru(x_op, lengths, w_op)
    out.backward(grad)
    x_ref, *w_ref = leaves(x, *w)
    want = bigru_reference(x_ref, lengths, w_ref)
    want.backward(grad)
    x_gru = x.detach().clone().requires_grad_()
    want_gru, gru = packed(x_gru, lengths, w)
    want_gru.backward(grad)
    torch.testing.assert_close(out, want, **TOL[dtype])
    torch.testing.assert_close(out, want_gru, **TOL[dtype])
    torch.testing.assert_close(x_op.grad, x_ref.grad, **TOL[dtype])
    torch.testing.assert_close(x_op.grad * valid, x_gru.grad * valid, **TOL[dtype])
    assert torch.count_nonzero(x_op.grad * ~valid) == 0          # padding gets no gradient
    for name, a, b, c in zip(BiGRUWeights._fields, w_op, w_ref, gru._flat_weights):
        torch.testing.assert_close(a.grad, b.grad, **TOL[dtype], msg=name)
        torch.testing.assert_close(a.grad, c.grad, **TOL[dtype], msg=name)


@pytest.mark.parametrize("pad", [float("nan"), 7.0, float("inf")], ids=["nan", "7", "inf"])
def test_padding_content_reaches_neither_output_nor_gradient(pad):
    x0, lengths, w = make([9, 4, 1, 6], pad=0.0)
    x1 = x0.clone()
    x1[~valid_rows(lengths, 9).expand_as(x1)] = pad
    grad = torch.randn(4, 9, 10, dtype=torch.float64)
    results = []
    for x in (x0, x1):
        x, *ws = leaves(x, *w)
        out = bigru(x, lengths, ws)
        out.backward(grad)
        results.append((out, x.grad, [t.grad for t in ws]))
    (o0, gx0, gw0), (o1, gx1, gw1) = results
    assert torch.equal(o0, o1) and torch.equal(gx0, gx1)
    assert all(torch.equal(a, b) for a, b in zip(gw0, gw1))
    assert torch.isfinite(gx1).all() and all(torch.isfinite(g).all() for g in gw1)
    assert torch.count_nonzero(o1 * ~valid_rows(lengths, 9)) == 0


def test_zero_length_sample_gives_zeros():
    x, _, w = make([5, 5])
    out = bigru(x, torch.tensor([0, 3]), w)
    assert torch.count_nonzero(out[0]) == 0 and torch.count_nonzero(out[1, 3:]) == 0
    torch.testing.assert_close(out[1:], bigru_reference(x[1:], torch.tensor([3]), w), **TOL[torch.float64])


@pytest.mark.parametrize("B,L", [(0, 5), (2, 0)], ids=["empty-batch", "zero-steps"])
def test_empty_input_gives_empty_output_and_zero_gradients(B, L):
    _, _, w = make([3])
    x, *ws = leaves(torch.randn(B, L, 6, dtype=torch.float64), *w)
    out = bigru(x, torch.zeros(B, dtype=torch.int64), ws)
    assert out.shape == (B, L, 10)
    out.sum().backward()
    assert x.grad.shape == x.shape and all(torch.count_nonzero(t.grad) == 0 for t in ws)


def test_a_sample_does_not_depend_on_the_batch_around_it():
    x, lengths, w = make([12, 5, 8])
    out = bigru(x, lengths, w)
    for b in range(3):
        L = int(lengths[b])
        alone = bigru(x[b:b + 1, :L], lengths[b:b + 1], w)
        torch.testing.assert_close(out[b:b + 1, :L], alone, **TOL[torch.float64])


def test_gradcheck_float64():
    x, lengths, w = make([4, 1, 3], C=3, H=2, pad=0.0)
    inputs = leaves(x, *w)
    assert torch.autograd.gradcheck(lambda x, *w: bigru(x, lengths, w), inputs)


def test_opcheck_both_ops():
    x, lengths, w = make([5, 2, 4], C=3, H=4)
    x, *ws = leaves(x, *w)
    torch.library.opcheck(torch.ops.fian_fast.bigru.default, (x, lengths, ws))
    grad = torch.randn(3, 5, 8, dtype=torch.float64)
    out = bigru(x, lengths, ws).detach()
    torch.library.opcheck(torch.ops.fian_fast.bigru_backward.default,
                          (grad, x.detach(), lengths, out, [t.detach() for t in ws]))


@DTYPES
@LENGTHS
def test_cpu_backward_equals_the_recomputing_backward(dtype, lengths):
    """The CPU kernel (gradients from the saved output) and the kernel CUDA runs (the forward
    recomputed and differentiated by autograd) on the same inputs, NaN padding included."""
    x, lengths, w = make(lengths, dtype=dtype, pad=float("nan"))
    out = bigru(x, lengths, w)
    grad = torch.randn_like(out)
    grad[~valid_rows(lengths, x.shape[1]).expand_as(grad)] = float("nan")    # ignored: out is 0 there
    got = _bigru_backward_cpu(grad, x, lengths, out, list(w))
    want = _recomputing_backward(grad.nan_to_num(0.0), x.nan_to_num(0.0), lengths, list(w))
    for name, a, b in zip(("x",) + BiGRUWeights._fields, got, want):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=name)


def test_forward_and_backward_read_nothing_on_the_host():
    x, lengths, w = make([6, 2, 4])
    x, *ws = leaves(x, *w)
    with count_host_reads() as reads:
        bigru(x, lengths, ws, validate=False).sum().backward()
    assert reads.total == 0 and reads.ops > 0


# ---- argument errors ------------------------------------------------------------------------

def _bad_cases():
    x, lengths, w = make([4, 2], C=3, H=2)
    f32 = BiGRUWeights(*(t.float() for t in w))
    yield "x-2d", (x[0], lengths, w), r"bigru: x should be a 3-D tensor, got 2-D"
    yield "lengths-float", (x, lengths.double(), w), r"bigru: lengths should be an integer tensor, got torch.float64"
    yield "lengths-size", (x, lengths[:1], w), r"bigru: lengths should have size 2 at dim 0"
    yield "seven-weights", (x, lengths, list(w)[:7]), r"bigru: weights should be a BiGRUWeights of 8 tensors, got 7"
    yield "weight-shape", (x, lengths, w._replace(weight_ih_reverse=w.weight_ih[:, :2])), \
        r"bigru: weights.weight_ih_reverse should have size 3 at dim 1"
    yield "bias-shape", (x, lengths, w._replace(bias_hh=w.bias_hh[:5])), \
        r"bigru: weights.bias_hh should have size 6 at dim 0"
    yield "dtype", (x, lengths, f32), r"bigru: weights.weight_ih should have the dtype of x \(torch.float64\)"
    yield "lengths-range", (x, torch.tensor([5, 1]), w), r"bigru: lengths should lie in \[0, 4\], got values in \[1, 5\]"


@pytest.mark.parametrize("args,match", [c[1:] for c in _bad_cases()], ids=[c[0] for c in _bad_cases()])
def test_bad_arguments_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        bigru(*args)


def test_registered_ops_check_their_arguments():
    x, lengths, w = make([4, 2], C=3, H=2)
    with pytest.raises(ValueError, match=r"fian_fast::bigru: weights.bias_ih should have the dtype of x"):
        torch.ops.fian_fast.bigru(x, lengths, list(w._replace(bias_ih=w.bias_ih.float())))
    out = bigru(x, lengths, w)
    with pytest.raises(ValueError, match=r"fian_fast::bigru_backward: grad should have size 4 at dim 2"):
        torch.ops.fian_fast.bigru_backward(torch.zeros(2, 4, 3, dtype=torch.float64), x, lengths, out, list(w))
    with pytest.raises(ValueError, match=r"fian_fast::bigru_backward: out should be torch.float64 on cpu like x"):
        torch.ops.fian_fast.bigru_backward(out, x, lengths, out.float(), list(w))


# ---- compiled: one node, whatever the length ------------------------------------------------

@pytest.mark.parametrize("L", [16, 200])
def test_compiled_bigru_is_one_node_forward_and_backward(L):
    x, lengths, w = make([L, L // 2, 1], C=4, H=3, dtype=torch.float32)
    x, *ws = leaves(x, *w)
    (forward, backward), out = aot_graphs(lambda x, *ws: bigru(x, lengths, ws, validate=False), x, *ws)
    fw, bw = targets(forward), targets(backward)
    assert fw.count("fian_fast.bigru.default") == 1 and bw.count("fian_fast.bigru_backward.default") == 1
    assert not any("gru" in t and "fian_fast" not in t for t in fw + bw), fw + bw
    assert len(fw) <= 3 and len(bw) <= 12            # the op, and getitems of its nine gradients
    torch.testing.assert_close(out, bigru(x, lengths, ws), **TOL[torch.float32])


def test_encoder_graph_size_does_not_grow_with_the_frames():
    sizes = []
    for L in (8, 64):
        module = BiGRU(4, 6)
        x, lengths = torch.randn(2, L, 4, requires_grad=True), torch.tensor([L, 3])
        (forward, backward), _ = aot_graphs(module, x, lengths)
        sizes.append((len(forward.graph.nodes), len(backward.graph.nodes)))
    assert sizes[0] == sizes[1]


# ---- autocast -------------------------------------------------------------------------------

def test_cpu_autocast_computes_in_the_weights_dtype_eager_and_compiled():
    x, lengths, w = make([6, 3], dtype=torch.float32)
    want = bigru(x, lengths, w)

    def under_autocast(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return bigru(x.to(torch.bfloat16), lengths, w, validate=False)

    eager = under_autocast(x)
    torch._dynamo.reset()
    compiled = torch.compile(under_autocast, backend="aot_eager", fullgraph=True)(x)
    assert eager.dtype == compiled.dtype == torch.float32
    torch.testing.assert_close(eager, bigru(x.to(torch.bfloat16).float(), lengths, w), atol=0, rtol=0)
    torch.testing.assert_close(compiled, eager, atol=0, rtol=0)
    torch.testing.assert_close(eager, want, atol=2e-2, rtol=0)


# ---- CUDA -----------------------------------------------------------------------------------

def _flat_module(C, H, dtype=torch.float32):
    module = BiGRU(C, 2 * H).to("cuda", dtype)
    return module, module.gru.weights()


def _no_chunk_warning(fn):
    """Runs ``fn`` with every warning recorded; asserts cuDNN never copied the weights."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
        torch.cuda.synchronize()
    assert not [w for w in caught if CONTIGUOUS_CHUNK_WARNING in str(w.message)], [str(w.message) for w in caught]
    return result


@pytest.mark.cuda
def test_cuda_without_flat_weights_cudnn_warns():
    """The warning this file's CUDA tests look for is the one cuDNN gives for weights outside one
    buffer (the check would pass vacuously otherwise)."""
    x, lengths, w = make([7, 3], dtype=torch.float32, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bigru(x, lengths, w)
    assert any(CONTIGUOUS_CHUNK_WARNING in str(c.message) for c in caught)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cuda_flat_weights_forward_and_backward_without_a_copy(dtype):
    module, w = _flat_module(6, 5, dtype)
    for direction in (w[:4], w[4:]):
        assert len({t.untyped_storage().data_ptr() for t in direction}) == 1   # views of one buffer
    x, lengths, _ = make([7, 3, 1], dtype=dtype, device="cuda")
    x.requires_grad_()
    out = _no_chunk_warning(lambda: module(x, lengths))
    _no_chunk_warning(lambda: out.sum().backward())
    want, gru = packed(x.detach(), lengths, w)
    tol = TOL[dtype] if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out, want, **tol)


@pytest.mark.cuda
def test_cuda_flat_weights_after_moves():
    """.cuda(), .double(), .float() and .to(device) each lay the weights out again (nn.GRU
    does it in _apply); the values survive every move."""
    module = BiGRU(6, 10)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    x, lengths, _ = make([7, 3], dtype=torch.float32, device="cuda")
    for move, dtype in ((lambda m: m.cuda(), torch.float32), (lambda m: m.double(), torch.float64),
                        (lambda m: m.float(), torch.float32), (lambda m: m.to("cpu").to("cuda"), torch.float32)):
        move(module)
        w = module.gru.weights()
        assert all(t.is_cuda and t.dtype == dtype for t in w)
        for direction in (w[:4], w[4:]):
            assert len({t.untyped_storage().data_ptr() for t in direction}) == 1
        _no_chunk_warning(lambda: module(x.to(dtype), lengths).sum().backward())
        for k, v in module.state_dict().items():
            torch.testing.assert_close(v.cpu().float(), state[k])
    module.load_state_dict({k: v + 1 for k, v in state.items()})        # in place: still one buffer
    _no_chunk_warning(lambda: module(x, lengths))


@pytest.mark.cuda
def test_cuda_autocast_follows_cudnns_rule_eager_and_compiled():
    """Under bf16 autocast an nn.GRU computes in float16 (cuDNN's autocast rule) with its weights
    cast into one buffer; the op does the same, eagerly and compiled, without cuDNN's copy warning."""
    module, w = _flat_module(6, 5)
    x, lengths, _ = make([7, 3, 1], dtype=torch.float32, device="cuda")

    def run(x):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return module(x, lengths)

    eager = _no_chunk_warning(lambda: run(x))
    torch._dynamo.reset()
    compiled = _no_chunk_warning(lambda: torch.compile(run, fullgraph=True)(x))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        want, _ = packed(x, lengths, w)
    assert eager.dtype == compiled.dtype == want.dtype == torch.float16
    torch.testing.assert_close(eager, want.masked_fill(~valid_rows(lengths, 7), 0), atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(compiled, eager, atol=1e-3, rtol=1e-3)
    xg = x.clone().requires_grad_()
    _no_chunk_warning(lambda: run(xg).float().sum().backward())
    assert xg.grad.dtype == torch.float32 and all(p.grad.dtype == torch.float32 for p in module.parameters())


@pytest.mark.cuda
def test_cuda_graph_captures_forward_and_backward():
    module, w = _flat_module(6, 5)
    x, lengths, _ = make([7, 3, 1], dtype=torch.float32, device="cuda")
    x.requires_grad_()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):          # warm-up: cuDNN picks its algorithms outside the capture
        module(x, lengths).sum().backward()
    torch.cuda.current_stream().wait_stream(stream)
    module.zero_grad(set_to_none=True)
    x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = module(x, lengths)
        out.sum().backward()
    graph.replay()
    torch.cuda.synchronize()
    x_ref = x.detach().clone().requires_grad_()
    want = module(x_ref, lengths)
    want.sum().backward()
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(x.grad, x_ref.grad)
