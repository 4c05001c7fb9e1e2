"""``fian_fast.ops.cga`` (eq. 4-6): the op wrapper on the CPU (the ATen path: the fused algebra
with the attention core as the ``fian_fast::cga_attention_aten`` op), argument validation, and on
a GPU the fused Triton path at the paper's shapes.

GPU tolerances (flash-attention's rule): the fused path's max error against a float64 reference
is at most 2x that of the same-precision PyTorch computation (every op in the input dtype,
``_cga_same_precision``) plus a floor of 1e-6 of the output scale.
"""
import importlib
import importlib.util
import math
import subprocess
import sys

import pytest
import torch

from fian_fast import _cga
from fian_fast.ops import CGAWeights, cga
from fian_fast.reference.cga import cga as cga_reference
from fian_fast.reference.cga import length_mask

NAMES = ["query", "key_value", "w_q", "w_k", "w_v", "w_o", "w_gate_q", "w_gate_v", "b_gate", "b_info",
         "w_info_q", "w_info_v"]


def _make(B, Lq, Lk, d, separate=False, dtype=torch.float32, device="cpu", seed=0, ql=None, kl=None):
    g = torch.Generator().manual_seed(seed)
    n_w = 8 if separate else 6
    t = [torch.randn(B, Lq, d, generator=g), torch.randn(B, Lk, d, generator=g)]
    t += [torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(6)]
    t += [torch.randn(d, generator=g) for _ in range(2)]
    t += [torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(n_w - 6)]
    t = [x.to(device, dtype) for x in t]
    ql = torch.randint(1, Lq + 1, (B,), generator=g) if ql is None else torch.tensor(ql)
    kl = torch.randint(1, Lk + 1, (B,), generator=g) if kl is None else torch.tensor(kl)
    return t, ql.to(device), kl.to(device)


def _call(fn, t, ql, kl, heads, **kw):
    extra = t[10:] if len(t) > 10 else [None, None]
    return fn(t[0], t[1], ql, kl, CGAWeights(*t[2:10], *extra), heads, **kw)


# ---- CPU: the wrapper runs the ATen path ------------------------------------------------------

def _aten_path(*args):
    """The CPU path of ops.cga whatever the dtype (ops.cga sends float64 to the reference)."""
    return importlib.import_module("fian_fast.ops.cga")._cga_fused(*args, "ieee", kernels="aten")


def _assert_forward_and_gradients_close(fn, t, ql, kl, heads, atol, rtol=0.0):
    g = torch.Generator().manual_seed(1)
    grad = torch.randn(t[0].shape, generator=g, dtype=t[0].dtype)
    got, got_grads = _forward_backward(fn, t, ql, kl, heads, grad)
    want, want_grads = _forward_backward(cga_reference, [x.double() for x in t], ql, kl, heads, grad.double())
    for name, a, b in zip(["output"] + NAMES, [got] + got_grads, [want] + want_grads):
        torch.testing.assert_close(a.double(), b, atol=atol * max(b.abs().max().item(), 1.0), rtol=rtol, msg=name)


@pytest.mark.parametrize("separate", [False, True], ids=["shared", "separate"])
@pytest.mark.parametrize("B,Lq,Lk,d,heads", [(3, 7, 13, 32, 4), (1, 1, 1, 8, 1), (2, 30, 3, 24, 3),
                                             (4, 17, 200, 64, 8)], ids=["odd", "one", "few-keys", "tacos-like"])
def test_cpu_matches_reference_forward_and_gradients(B, Lq, Lk, d, heads, separate):
    """float32 on the CPU (the ATen path) against the float64 reference, output and every
    gradient, on random lengths (a full row and a length-1 row among them)."""
    t, ql, kl = _make(B, Lq, Lk, d, separate)
    ql[0], kl[-1] = Lq, 1
    _assert_forward_and_gradients_close(cga, t, ql, kl, heads, atol=2e-6)


@pytest.mark.parametrize("separate", [False, True], ids=["shared", "separate"])
def test_cpu_aten_path_float64_matches_reference_to_rounding(separate):
    t, ql, kl = _make(3, 6, 11, 16, separate, dtype=torch.float64, ql=[6, 0, 2], kl=[11, 4, 0])
    _assert_forward_and_gradients_close(_aten_path, t, ql, kl, 2, atol=1e-13)


def test_cpu_bfloat16_runs_in_float32_inside():
    """bf16 in, bf16 out, within bf16's rounding of the float64 reference (accumulation in float32)."""
    t, ql, kl = _make(2, 9, 21, 32)
    out = _call(cga, [x.bfloat16() for x in t], ql, kl, 4)
    want = _call(cga_reference, [x.bfloat16().double() for x in t], ql, kl, 4)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), want, atol=2e-2 * want.abs().max().item(), rtol=0)


def test_cpu_reference_mode_is_the_reference_exactly(monkeypatch):
    monkeypatch.setattr(_cga, "MODE", "reference")
    t, ql, kl = _make(3, 7, 13, 32, separate=True)
    torch.testing.assert_close(_call(cga, t, ql, kl, 4), _call(cga_reference, t, ql, kl, 4), atol=0, rtol=0)


@pytest.mark.parametrize("fn", ["cga", "aten-path"])
def test_cpu_gradcheck_float64(fn):
    t, ql, kl = _make(2, 3, 5, 8, separate=True, dtype=torch.float64, ql=[3, 1], kl=[5, 2])
    leaves = [x.requires_grad_() for x in t]
    f = cga if fn == "cga" else _aten_path
    assert torch.autograd.gradcheck(lambda *a: _call(f, list(a), ql, kl, 2), leaves)


def test_cpu_compiled_matches_eager():
    """torch.compile(fullgraph=True) of the CPU path (inductor; the attention core an opaque op):
    output and gradients as eager's."""
    t, ql, kl = _make(2, 6, 15, 16, separate=False, ql=[6, 3], kl=[15, 0])
    grad = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(2))
    torch._dynamo.reset()
    got, got_grads = _forward_backward(torch.compile(cga, fullgraph=True), t, ql, kl, 2, grad)
    want, want_grads = _forward_backward(cga, t, ql, kl, 2, grad)
    for name, a, b in zip(["output"] + NAMES, [got] + got_grads, [want] + want_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


def test_cpu_zero_lengths_give_zeros_not_nan():
    t, ql, kl = _make(2, 5, 6, 16, ql=[0, 2], kl=[6, 0])
    out = _call(cga, t, ql, kl, 2)
    assert torch.isfinite(out).all()
    assert torch.count_nonzero(out[0]) == 0 and torch.count_nonzero(out[1, 2:]) == 0


def test_empty_batch():
    t, ql, kl = _make(0, 5, 6, 16)
    assert _call(cga, t, ql, kl, 2).shape == (0, 5, 16)


def test_import_does_not_import_triton_and_cpu_call_not_the_kernels():
    # a CPU call runs ATen ops behind torch.library ops, whose dispatch imports torch._dynamo (and
    # with it triton) on first use, as the BiGRU op does; the Triton kernels stay unloaded
    code = ("import sys, torch, fian_fast\n"
            "from fian_fast.ops import cga\n"
            "assert 'triton' not in sys.modules, 'triton imported'\n"
            "d = 8\n"
            "w = fian_fast.ops.CGAWeights(*[torch.randn(d, d) for _ in range(6)], torch.zeros(d), torch.zeros(d))\n"
            "cga(torch.randn(1, 2, d), torch.randn(1, 3, d), torch.tensor([2]), torch.tensor([3]), w, 2)\n"
            "assert 'fian_fast.kernels' not in sys.modules, 'Triton kernels imported'\n"
            "assert not any(m.startswith('fian_fast.kernels') for m in sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _bad_cases():
    B, Lq, Lk, d = 2, 4, 5, 8
    t, ql, kl = _make(B, Lq, Lk, d)
    weights = CGAWeights(*t[2:10])
    base = dict(query=t[0], key_value=t[1], weights=weights, query_lengths=ql, key_lengths=kl, num_heads=2)
    cases = {
        "query": torch.randn(Lq, d),
        "key_value": torch.randn(B, Lk, d + 1),
        "num_heads": 3,
        "query_lengths": torch.tensor([1, 5]),
        "key_lengths": torch.tensor([-1, 2]),
        "w_o": torch.randn(d, d + 1),
        "b_info": torch.randn(d + 1),
        "w_gate_v": torch.randn(d, d, dtype=torch.float64),
        "w_info_q": torch.randn(d, d),
    }
    for name, bad in cases.items():
        kw = dict(base)
        if name in CGAWeights._fields:
            kw["weights"] = weights._replace(**{name: bad})
        else:
            kw[name] = bad
        yield pytest.param(kw, name, id=name)
    kw = dict(base, weights=tuple(weights))
    yield pytest.param(kw, "weights should be a CGAWeights", id="weights-not-a-bundle")
    kw = dict(base, query_lengths=ql.float())
    yield pytest.param(kw, "query_lengths", id="float-lengths")
    kw = dict(base, num_heads=0)
    yield pytest.param(kw, "num_heads", id="zero-heads")


@pytest.mark.parametrize("kwargs,name", list(_bad_cases()))
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        cga(**kwargs)


# ---- the registered ops ------------------------------------------------------------------------

def _op_cases(device):
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device).requires_grad_()

    q, k, v, x, i, b = rnd(2, 7, 32), rnd(2, 13, 32), rnd(2, 13, 32), rnd(2, 7, 32), rnd(2, 7, 32), rnd(32)
    ql, kl = torch.tensor([7, 3], device=device), torch.tensor([13, 5], device=device)
    heads, lse = torch.ops.fian_fast.cga_attention(q, k, v, ql, kl, 2, "ieee")
    grad = torch.randn(2, 7, 32, generator=g).to(device)
    const = [t.detach() for t in (q, k, v, heads, x, i, b)]  # backward ops take no gradient themselves
    return {
        "cga_attention": (torch.ops.fian_fast.cga_attention.default, (q, k, v, ql, kl, 2, "ieee")),
        "cga_attention_backward": (torch.ops.fian_fast.cga_attention_backward.default,
                                   (grad, *const[:4], lse, ql, kl, 2, "ieee")),
        "cga_gate-separate": (torch.ops.fian_fast.cga_gate.default, (x, i, b, b, ql)),
        "cga_gate-shared": (torch.ops.fian_fast.cga_gate.default, (x, None, b, b, ql)),
        "cga_gate_backward-separate": (torch.ops.fian_fast.cga_gate_backward.default,
                                       (grad, const[4], const[5], const[6], const[6], ql)),
        "cga_gate_backward-shared": (torch.ops.fian_fast.cga_gate_backward.default,
                                     (grad, const[4], None, const[6], const[6], ql)),
    }


OP_NAMES = ["cga_attention", "cga_attention_backward", "cga_gate-separate", "cga_gate-shared",
            "cga_gate_backward-separate", "cga_gate_backward-shared"]


def _aten_op_cases(dtype):
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(dtype).requires_grad_()

    q, k, v = rnd(3, 7, 32), rnd(3, 13, 32), rnd(3, 13, 32)
    ql, kl = torch.tensor([7, 3, 0]), torch.tensor([13, 0, 5])
    heads, probs = torch.ops.fian_fast.cga_attention_aten(q, k, v, ql, kl, 4)
    grad = torch.randn(3, 7, 32, generator=g).to(dtype)
    return {
        "cga_attention_aten": (torch.ops.fian_fast.cga_attention_aten.default, (q, k, v, ql, kl, 4)),
        "cga_attention_aten_backward": (torch.ops.fian_fast.cga_attention_aten_backward.default,
                                        (grad, q.detach(), k.detach(), v.detach(), probs, 4)),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("name", ["cga_attention_aten", "cga_attention_aten_backward"])
def test_opcheck_aten_ops(name, dtype):
    """torch.library.opcheck of the ATen attention ops (schema, autograd registration, fake
    tensor, AOT dispatch), zero-length rows and samples included."""
    op, args = _aten_op_cases(dtype)[name]
    torch.library.opcheck(op, args)


def test_aten_attention_op_matches_the_reference_heads():
    """The op's heads are the reference's attention before W^O (identity W^Q, W^K, W^V), its
    probabilities sum to one over the valid keys and are zero elsewhere, and its gradients pass
    gradcheck in float64."""
    g = torch.Generator().manual_seed(3)
    q, kv = (torch.randn(3, L, 16, generator=g, dtype=torch.float64) for L in (5, 9))
    ql, kl = torch.tensor([5, 2, 4]), torch.tensor([9, 1, 0])
    heads, probs = torch.ops.fian_fast.cga_attention_aten(q, kv, kv, ql, kl, 2)   # the reference's K = V
    eye = torch.eye(16, dtype=torch.float64)
    from fian_fast.reference.cga import cross_modal_attention
    torch.testing.assert_close(heads, cross_modal_attention(q, kv, ql, kl, eye, eye, eye, eye, 2), atol=1e-14, rtol=0)
    assert probs.shape == (3, 2, 5, 9) and probs.dtype == torch.float64
    keep = length_mask(kl, 9)[:, None, None, :] & length_mask(ql, 5)[:, None, :, None]
    assert torch.count_nonzero(probs[~keep.expand_as(probs)]) == 0
    torch.testing.assert_close(probs.sum(-1)[0], torch.ones(2, 5, dtype=torch.float64))
    torch.testing.assert_close(probs.sum(-1)[1, :, :2], torch.ones(2, 2, dtype=torch.float64))
    leaves = [x.requires_grad_() for x in (q, kv, torch.randn(3, 9, 16, generator=g, dtype=torch.float64))]
    assert torch.autograd.gradcheck(
        lambda *a: torch.ops.fian_fast.cga_attention_aten(*a, ql, kl, 2)[0], leaves)


@pytest.mark.parametrize("name", OP_NAMES)
def test_opcheck_cpu_interpreter(name):
    """torch.library.opcheck of every op, all of its parts (schema, autograd registration, fake
    tensor, AOT dispatch), on the CPU under the Triton interpreter (test_cuda_opcheck on a GPU)."""
    pytest.importorskip("triton")
    if not _cga.triton_runs_on("cpu"):
        pytest.skip("needs TRITON_INTERPRET=1 (tests/conftest.py sets it without a GPU)")
    op, args = _op_cases("cpu")[name]
    torch.library.opcheck(op, args)


@pytest.mark.cuda
@pytest.mark.parametrize("name", OP_NAMES)
def test_cuda_opcheck(name):
    op, args = _op_cases("cuda")[name]
    torch.library.opcheck(op, args)


def test_import_registers_the_ops_without_triton_or_dynamo():
    code = ("import sys, torch, fian_fast\n"
            "assert torch.ops.fian_fast.cga_attention.default._schema.name == 'fian_fast::cga_attention'\n"
            "for name in ('cga_attention', 'cga_attention_backward', 'cga_gate', 'cga_gate_backward'):\n"
            "    getattr(torch.ops.fian_fast, name).default\n"
            "bad = [m for m in ('triton', 'torch._dynamo', 'fian_fast.kernels.cga') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---- CUDA: the fused Triton path ----------------------------------------------------------------

def _cga_same_precision(query, key_value, query_lengths, key_lengths, weights, num_heads):
    """eq. 4-6 in plain PyTorch with every op in the input dtype (no upcast): the error baseline."""
    w_q, w_k, w_v, w_o, w_gate_q, w_gate_v, b_gate, b_info, w_info_q, w_info_v = weights
    B, Lq, d = query.shape
    Lk, dk = key_value.shape[1], d // num_heads
    q = (query @ w_q.t()).view(B, Lq, num_heads, dk).transpose(1, 2)
    k = (key_value @ w_k.t()).view(B, Lk, num_heads, dk).transpose(1, 2)
    v = (key_value @ w_v.t()).view(B, Lk, num_heads, dk).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(dk)
    s = s.masked_fill(~length_mask(key_lengths, Lk)[:, None, None, :], float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)
    cma = (p @ v).transpose(1, 2).reshape(B, Lq, d) @ w_o.t()
    x = query @ w_gate_q.t() + cma @ w_gate_v.t()
    info = x if w_info_q is None else query @ w_info_q.t() + cma @ w_info_v.t()
    return torch.sigmoid(x + b_gate) * (info + b_info) * length_mask(query_lengths, Lq)[..., None].to(query.dtype)


def _forward_backward(fn, t, ql, kl, heads, grad):
    leaves = [x.detach().clone().requires_grad_() for x in t]
    out = _call(fn, leaves, ql, kl, heads)
    out.backward(grad.to(out.dtype))
    return out.detach(), [x.grad for x in leaves]


def _err(a, b):
    return (a.double() - b.double()).abs().max().item()


def _check_two_x(t, ql, kl, heads, dtype):
    grad = torch.randn(t[0].shape, device=t[0].device, dtype=torch.float64)
    ref, ref_g = _forward_backward(cga_reference, [x.double() for x in t], ql, kl, heads, grad)
    low = [x.to(dtype) for x in t]
    pt, pt_g = _forward_backward(_cga_same_precision, low, ql, kl, heads, grad)
    out, out_g = _forward_backward(cga, low, ql, kl, heads, grad)
    assert out.dtype == dtype
    for name, a, p, r in zip(["output"] + NAMES, [out] + out_g, [pt] + pt_g, [ref] + ref_g):
        floor = 1e-6 * r.abs().max().item()
        assert _err(a, r) <= 2 * _err(p, r) + floor, f"{name}: fused {_err(a, r):.3e} vs PyTorch {_err(p, r):.3e}"


PAPER = dict(B=64, Lv=200, Lq=20, d=512, heads=8)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("direction", ["words-attend-video", "video-attends-words"])
@pytest.mark.parametrize("separate", [False, True], ids=["shared", "separate"])
def test_cuda_paper_shapes_within_two_x_of_pytorch(direction, dtype, separate):
    B, Lv, Lq, d = PAPER["B"], PAPER["Lv"], PAPER["Lq"], PAPER["d"]
    Lquery, Lkey = (Lq, Lv) if direction == "words-attend-video" else (Lv, Lq)
    t, ql, kl = _make(B, Lquery, Lkey, d, separate, device="cuda")
    _check_two_x(t, ql, kl, PAPER["heads"], dtype)


@pytest.mark.cuda
def test_cuda_long_keys_two_pass_backward():
    t, ql, kl = _make(4, 33, 700, 128, device="cuda")
    _check_two_x(t, ql, kl, 2, torch.float32)


@pytest.mark.cuda
def test_cuda_deterministic_and_zero_lengths():
    t, ql, kl = _make(8, 20, 200, 512, device="cuda", ql=[0, 20, 5, 1, 20, 3, 7, 20], kl=[200, 0, 1, 200, 5, 9, 64, 200])
    t = [x.to(torch.bfloat16) for x in t]
    grad = torch.randn(8, 20, 512, device="cuda")
    out1, g1 = _forward_backward(cga, t, ql, kl, 8, grad)
    out2, g2 = _forward_backward(cga, t, ql, kl, 8, grad)
    assert torch.isfinite(out1).all() and torch.count_nonzero(out1[0]) == 0
    assert torch.equal(out1, out2)
    for name, a, b in zip(NAMES, g1, g2):
        assert torch.isfinite(a).all() and torch.equal(a, b), name


@pytest.mark.cuda
def test_cuda_autocast_runs_in_autocast_dtype():
    t, ql, kl = _make(4, 20, 200, 512, device="cuda")
    leaves = [x.requires_grad_() for x in t]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = _call(cga, leaves, ql, kl, 8)
    assert out.dtype == torch.bfloat16
    ref = _call(cga_reference, [x.detach().double() for x in t], ql, kl, 8)
    assert _err(out, ref) <= 0.05 * ref.abs().max().item()
    out.float().sum().backward()
    assert all(x.grad is not None and x.grad.dtype == torch.float32 for x in leaves)


@pytest.mark.cuda
def test_cuda_torch_compile_matches_eager():
    t, ql, kl = _make(4, 20, 200, 512, device="cuda")
    eager = _call(cga, t, ql, kl, 8)
    compiled = torch.compile(lambda *a: _call(cga, list(a), ql, kl, 8))(*t)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("setting,expected", [
    ("pass", "ieee"),
    ("torch.set_float32_matmul_precision('high')", "tf32"),
    ("torch.backends.cuda.matmul.fp32_precision = 'tf32'", "tf32"),
    ("torch.backends.fp32_precision = 'tf32'", "tf32"),
    ("torch.backends.cuda.matmul.fp32_precision = 'ieee'", "ieee"),
])
def test_default_precision_follows_either_float32_matmul_api(setting, expected):
    """The float32 dot precision follows cuBLAS's setting whether it was made through the legacy
    API or the per-backend one (whose use makes torch.get_float32_matmul_precision raise)."""
    code = ("import torch\n"
            "from fian_fast._cga import default_input_precision as p\n"
            f"{setting}\n"
            "print(p(torch.float32), p(torch.bfloat16))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True)
    assert out.stdout.split() == [expected, "tf32"]


@pytest.mark.cuda
def test_cuda_float64_under_autocast_takes_the_reference():
    t, ql, kl = _make(2, 5, 9, 64, dtype=torch.float64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = _call(cga, t, ql, kl, 4)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _call(cga_reference, t, ql, kl, 4), atol=1e-12, rtol=1e-12)


@pytest.mark.cuda
def test_cuda_heads_wider_than_256_take_the_reference():
    t, ql, kl = _make(2, 5, 9, 512, device="cuda")
    torch.testing.assert_close(_call(cga, t, ql, kl, 1), _call(cga_reference, t, ql, kl, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_cuda_tensors_on_a_device_that_is_not_current():
    t, ql, kl = _make(2, 20, 200, 64, device="cuda:1")
    with torch.cuda.device(0):
        out, grads = _forward_backward(cga, t, ql, kl, 4, torch.ones(2, 20, 64, device="cuda:1"))
    ref, ref_grads = _forward_backward(cga_reference, [x.double() for x in t], ql, kl, 4,
                                       torch.ones(2, 20, 64, device="cuda:1"))
    for name, a, r in zip(["output"] + NAMES, [out] + grads, [ref] + ref_grads):
        assert _err(a, r) <= 1e-4 * max(r.abs().max().item(), 1.0), name


# ---- the path rule (fian_fast._cga.use_triton) and FIAN_FAST_CGA ---------------------------------

@pytest.mark.parametrize("mode,interpret,device,dtype,head,expected", [
    ("auto", True, "cuda", torch.bfloat16, 64, True),
    ("auto", True, "cuda", torch.float32, 256, True),
    ("auto", True, "cuda", torch.float32, 257, False),      # wider than a tile
    ("auto", True, "cuda", torch.float64, 64, False),       # not a fused dtype
    ("auto", True, "cpu", torch.float32, 64, False),        # auto: CPU takes the reference
    ("triton", True, "cpu", torch.float32, 64, True),       # ... triton: the interpreter
    ("triton", False, "cpu", torch.float32, 64, False),     # ... unless there is none
    ("triton", True, "cpu", torch.float64, 64, False),
    ("triton", True, "cuda", torch.float16, 512, False),
    ("triton", True, "meta", torch.float32, 64, False),
    ("reference", True, "cuda", torch.bfloat16, 64, False),
], ids=lambda v: str(v).replace("torch.", ""))
def test_use_triton_rule(monkeypatch, mode, interpret, device, dtype, head, expected):
    monkeypatch.setattr(_cga, "MODE", mode)
    monkeypatch.setattr(_cga, "_INTERPRET", interpret)
    monkeypatch.setattr(_cga, "_HAS_TRITON", True)
    assert _cga.use_triton(device, dtype, head) is expected


def test_use_triton_needs_triton_installed(monkeypatch):
    monkeypatch.setattr(_cga, "_HAS_TRITON", False)
    for mode in _cga.MODES:
        monkeypatch.setattr(_cga, "MODE", mode)
        assert not _cga.use_triton("cuda", torch.float32, 64) and not _cga.use_triton("cpu", torch.float32, 64)


@pytest.mark.parametrize("mode,interpret,device,dtype,head,expected", [
    ("auto", True, "cuda", torch.bfloat16, 64, "triton"),
    ("auto", True, "cpu", torch.float32, 64, "aten"),
    ("auto", False, "cpu", torch.bfloat16, 256, "aten"),
    ("auto", True, "cpu", torch.float32, 257, "reference"),
    ("auto", True, "cpu", torch.float64, 64, "reference"),
    ("auto", True, "cuda", torch.float64, 64, "reference"),
    ("triton", True, "cpu", torch.float32, 64, "triton"),
    ("triton", False, "cpu", torch.float32, 64, "aten"),
    ("reference", True, "cpu", torch.float32, 64, "reference"),
    ("reference", True, "cuda", torch.float32, 64, "reference"),
    ("auto", True, "meta", torch.float32, 64, "reference"),
], ids=lambda v: str(v).replace("torch.", ""))
def test_cga_path_rule(monkeypatch, mode, interpret, device, dtype, head, expected):
    monkeypatch.setattr(_cga, "MODE", mode)
    monkeypatch.setattr(_cga, "_INTERPRET", interpret)
    monkeypatch.setattr(_cga, "_HAS_TRITON", True)
    assert _cga.cga_path(device, dtype, head) == expected


def test_cga_takes_the_path_the_rule_picks(monkeypatch):
    """ops.cga asks cga_path once per call and runs what it says: the fused algebra with the
    Triton kernels (here the interpreter on the CPU) or with the ATen core, or the reference."""
    ops_cga = importlib.import_module("fian_fast.ops.cga")  # the module (fian_fast.ops.cga is the function)

    t, ql, kl = _make(2, 5, 7, 32)
    calls = []
    monkeypatch.setattr(ops_cga, "_cga_fused",
                        lambda *a, kernels="triton": calls.append(kernels) or _cga_reference_of(*a))
    monkeypatch.setattr(ops_cga, "_cga_reference", lambda *a: calls.append("reference") or cga_reference(*a))
    for mode, expected in (("reference", "reference"), ("auto", "aten"), ("triton", "triton")):
        monkeypatch.setattr(_cga, "MODE", mode)
        monkeypatch.setattr(_cga, "_INTERPRET", True)
        monkeypatch.setattr(_cga, "_HAS_TRITON", True)
        calls.clear()
        _call(cga, t, ql, kl, 2)
        assert calls == [expected], mode
    calls.clear()
    _call(cga, [x.double() for x in t], ql, kl, 2)  # float64: the reference whatever the mode
    assert calls == ["reference"]


def _cga_reference_of(query, key_value, ql, kl, weights, num_heads, input_precision):
    assert input_precision == "ieee"  # torch's default float32 matmul precision
    return cga_reference(query, key_value, ql, kl, weights, num_heads)


def _run_python(code, timeout=600, **env):
    import os
    full_env = {k: v for k, v in os.environ.items() if k not in ("FIAN_FAST_CGA", "TRITON_INTERPRET")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, timeout=timeout, capture_output=True, text=True)


@pytest.mark.parametrize("value", ["fast", "Triton", ""])
def test_invalid_fian_fast_cga_raises_naming_variable_value_and_choices(value):
    proc = _run_python("import fian_fast", FIAN_FAST_CGA=value)
    assert proc.returncode != 0
    assert f"FIAN_FAST_CGA should be one of 'auto', 'triton', 'reference', got {value!r}" in proc.stderr


@pytest.mark.parametrize("value,interpret,expected", [
    (None, "1", "auto False"), ("auto", "1", "auto False"), ("triton", "1", "triton True"),
    ("triton", "0", "triton False"), ("reference", "1", "reference False"),
])
def test_fian_fast_cga_read_once_at_import(value, interpret, expected):
    """The variable (and TRITON_INTERPRET) are read when fian_fast is imported; changing them
    afterwards changes nothing."""
    code = ("import os, torch, fian_fast\n"
            "from fian_fast import _cga\n"
            "os.environ['FIAN_FAST_CGA'] = 'reference'\n"
            "os.environ['TRITON_INTERPRET'] = '1'\n"
            "print(_cga.MODE, _cga.use_triton('cpu', torch.float32, 16))\n")
    env = {"TRITON_INTERPRET": interpret} | ({} if value is None else {"FIAN_FAST_CGA": value})
    proc = _run_python(code, timeout=120, **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    has_triton = importlib.util.find_spec("triton") is not None
    assert proc.stdout.split() == (expected.split() if has_triton else [expected.split()[0], "False"])


# ---- compiling --------------------------------------------------------------------------------

_FIRST_CALL_COMPILED = r'''
import math, sys, torch
from fian_fast.ops import CGAWeights, cga
from fian_fast.reference.cga import cga as cga_reference

device, backend, separate = sys.argv[1], sys.argv[2], sys.argv[3] == "separate"
g = torch.Generator().manual_seed(0)
B, Lq, Lk, d, H = 3, 5, 19, 32, 2
def rnd(*shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale
t = [rnd(B, Lq, d), rnd(B, Lk, d)] + [rnd(d, d, scale=d ** -0.5) for _ in range(6)] + [rnd(d), rnd(d)]
t += [rnd(d, d, scale=d ** -0.5) for _ in range(2 if separate else 0)]
ql, kl = torch.tensor([5, 2, 0]), torch.tensor([19, 7, 3])
grad = rnd(B, Lq, d)

def run(fn, tensors, dev):
    leaves = [x.detach().to(dev).requires_grad_() for x in tensors]
    extra = leaves[10:] or [None, None]
    out = fn(leaves[0], leaves[1], ql.to(dev), kl.to(dev), CGAWeights(*leaves[2:10], *extra), H)
    out.backward(grad.to(dev, out.dtype))
    return [out] + [x.grad for x in leaves]

assert "fian_fast.kernels.cga" not in sys.modules
got = run(torch.compile(cga, fullgraph=True, backend=backend), [x.float() for x in t], device)
assert "fian_fast.kernels.cga" in sys.modules, "the compiled call did not run the Triton kernels"
want = run(cga_reference, t, "cpu")
names = ["output", "query", "key_value", "w_q", "w_k", "w_v", "w_o", "w_gate_q", "w_gate_v", "b_gate", "b_info",
         "w_info_q", "w_info_v"]
for name, a, b in zip(names, got, want):
    err = (a.detach().cpu().double() - b.detach()).abs().max().item()
    assert err <= 2e-5 * max(b.abs().max().item(), 1.0), (name, err)
print("ok")
'''


def _compile_first(device, backend, gate):
    proc = _run_python(_FIRST_CALL_COMPILED.replace("sys.argv[1], sys.argv[2], sys.argv[3]",
                                                    f"{device!r}, {backend!r}, {gate!r}"),
                       FIAN_FAST_CGA="triton", OMP_NUM_THREADS="1",
                       **({} if device == "cuda" else {"TRITON_INTERPRET": "1"}))
    assert proc.returncode == 0 and proc.stdout.split()[-1:] == ["ok"], proc.stderr[-4000:]


@pytest.mark.parametrize("gate", ["shared", "separate"])
def test_compile_first_in_a_fresh_process(gate):
    """The very first CGA call of a process is inside torch.compile(fullgraph=True) (inductor),
    forward and backward, on the fused path (FIAN_FAST_CGA=triton, the CPU under the
    interpreter); it matches the float64 reference. Padded rows, a sample with no query row."""
    pytest.importorskip("triton")
    _compile_first("cpu", "inductor", gate)


@pytest.mark.cuda
def test_cuda_compile_first_in_a_fresh_process():
    _compile_first("cuda", "inductor", "shared")


_PRECISION_UNDER_COMPILE = r'''
import math, torch
import fian_fast.kernels.cga as kernels
from fian_fast.ops import CGAWeights, cga

seen = []
forward = kernels.cga_attention_fwd
def spy(*args, **kwargs):
    seen.append(args[6])
    return forward(*args, **kwargs)
kernels.cga_attention_fwd = spy

d = 32
g = torch.Generator().manual_seed(0)
w = CGAWeights(*[torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(6)], torch.zeros(d), torch.zeros(d))
q, kv = torch.randn(2, 5, d, generator=g), torch.randn(2, 7, d, generator=g)
ql, kl = torch.tensor([5, 3]), torch.tensor([7, 2])
f = torch.compile(cga, fullgraph=True, backend="aot_eager")
torch.backends.cuda.matmul.fp32_precision = "tf32"
f(q, kv, ql, kl, w, 2)
torch.backends.cuda.matmul.fp32_precision = "ieee"
f(q, kv, ql, kl, w, 2)
torch.set_float32_matmul_precision("high")
f(q, kv, ql, kl, w, 2)
print(*seen)
'''


def test_compiled_float32_precision_follows_torch_setting():
    """Under torch.compile(fullgraph=True) the float32 dot precision is read at trace time (no
    graph break) and follows torch's float32 matmul setting, through either API; changing the
    setting recompiles."""
    pytest.importorskip("triton")
    proc = _run_python(_PRECISION_UNDER_COMPILE, FIAN_FAST_CGA="triton", TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.split() == ["tf32", "ieee", "tf32"]
