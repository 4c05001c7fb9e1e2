"""The Triton path of CGA (kernels/cga.py through fian_fast.ops.cga.cga_triton), on the CPU under
``TRITON_INTERPRET=1`` (tests/conftest.py sets it) or on a GPU, in float32 with IEEE dots (and
float16), against the float64 reference of eq. 4-6.

Tolerances: float32 with exact (IEEE) dots lands within ~2e-6 of float64 relative to the
largest value at these shapes; tests allow 2e-5 of that scale.
"""
import math
import sys

import pytest
import torch

from fian_fast.ops.cga import CGAWeights, cga_triton
from fian_fast.reference.cga import cga as cga_reference
from fian_fast.reference.cga import cross_modal_attention, information_gate

kernels = pytest.importorskip("fian_fast.kernels.cga")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
D, HEADS = 64, 4
RTOL = 2e-5


def _close(actual, expected, what):
    scale = max(expected.abs().max().item(), 1.0)
    err = (actual.double() - expected).abs().max().item()
    assert err <= RTOL * scale, f"{what}: max error {err:.3e} > {RTOL * scale:.3e}"


def _params(separate, generator, dtype=torch.float64):
    w = [torch.randn(D, D, generator=generator, dtype=dtype) / math.sqrt(D) for _ in range(6)]
    b = [torch.randn(D, generator=generator, dtype=dtype) for _ in range(2)]
    wi = [torch.randn(D, D, generator=generator, dtype=dtype) / math.sqrt(D) for _ in range(2)] if separate else []
    return w + b + wi


def _call(fn, query, key_value, ql, kl, params, **kw):
    w, b, wi = params[:6], params[6:8], params[8:]
    return fn(query, key_value, ql, kl, CGAWeights(*w, *b, *(wi or [None, None])), HEADS, **kw)


def _inputs(B, Lq, Lk, ql, kl, separate, seed=0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(B, Lq, D, generator=g, dtype=torch.float64)
    key_value = torch.randn(B, Lk, D, generator=g, dtype=torch.float64)
    return [query, key_value] + _params(separate, g), torch.tensor(ql), torch.tensor(kl)


def _run_triton(tensors, ql, kl, grad=None):
    leaves = [t.to(DEVICE, torch.float32).requires_grad_() for t in tensors]
    out = _call(cga_triton, leaves[0], leaves[1], ql.to(DEVICE), kl.to(DEVICE), leaves[2:], input_precision="ieee")
    if grad is not None:
        out.backward(grad.to(DEVICE, torch.float32))
    return out, [t.grad for t in leaves]


def _run_reference(tensors, ql, kl, grad=None):
    leaves = [t.clone().requires_grad_() for t in tensors]
    out = _call(cga_reference, leaves[0], leaves[1], ql, kl, leaves[2:])
    if grad is not None:
        out.backward(grad)
    return out, [t.grad for t in leaves]


NAMES = ["query", "key_value", "w_q", "w_k", "w_v", "w_o", "w_gate_q", "w_gate_v", "b_gate", "b_info",
         "w_info_q", "w_info_v"]


@pytest.mark.parametrize("separate", [False, True], ids=["shared", "separate"])
@pytest.mark.parametrize("Lq,Lk", [(7, 13), (7, 33), (17, 13), (17, 33)], ids=lambda v: str(v))
def test_forward_and_every_gradient(Lq, Lk, separate):
    tensors, ql, kl = _inputs(2, Lq, Lk, [Lq, Lq // 2 + 1], [Lk - 4, Lk], separate)
    grad = torch.randn(2, Lq, D, dtype=torch.float64)
    ref, ref_grads = _run_reference(tensors, ql, kl, grad)
    out, grads = _run_triton(tensors, ql, kl, grad)
    assert out.dtype == torch.float32 and out.shape == (2, Lq, D)
    _close(out.cpu(), ref.detach(), "output")
    for name, gt, gr in zip(NAMES, grads, ref_grads):
        _close(gt.cpu(), gr, f"d{name}")


@pytest.mark.parametrize("Lq,Lk", [(7, 200), (17, 13)], ids=lambda v: str(v))
def test_float16_path(Lq, Lk):
    """The half-precision kernels (fp16 operands, fp32 accumulation; Lk = 200 takes the fused
    256-key backward). The interpreter runs fp16 dots but not bf16 ones (its bf16 tl.dot returns
    garbage), so bf16 is checked on GPUs only (tests/test_cga.py). Tolerance: 5e-3 of the scale,
    about 5 fp16 ulps; observed <= 1.4e-3."""
    tensors, ql, kl = _inputs(2, Lq, Lk, [Lq, Lq // 2 + 1], [Lk, Lk // 3], separate=False)
    grad = torch.randn(2, Lq, D, dtype=torch.float64)
    ref, ref_grads = _run_reference(tensors, ql, kl, grad)
    leaves = [t.to(DEVICE, torch.float16).requires_grad_() for t in tensors]
    out = _call(cga_triton, leaves[0], leaves[1], ql.to(DEVICE), kl.to(DEVICE), leaves[2:])
    out.backward(grad.to(DEVICE, torch.float16))
    assert out.dtype == torch.float16
    for name, a, b in zip(["output"] + NAMES, [out] + [t.grad for t in leaves], [ref] + ref_grads):
        scale = b.abs().max().item()
        err = (a.double().cpu() - b.detach()).abs().max().item()
        assert err <= 5e-3 * scale, f"{name}: {err:.3e} > {5e-3 * scale:.3e}"


def test_zero_lengths_and_fully_masked_rows_give_zeros_not_nan():
    # sample 0: no query row at all; sample 1: no key (CMA = 0, the gate sees only the query)
    tensors, ql, kl = _inputs(2, 7, 13, [0, 5], [13, 0], separate=False)
    grad = torch.randn(2, 7, D, dtype=torch.float64)
    ref, ref_grads = _run_reference(tensors, ql, kl, grad)
    out, grads = _run_triton(tensors, ql, kl, grad)
    assert torch.isfinite(out).all()
    assert torch.count_nonzero(out[0]) == 0 and torch.count_nonzero(out[1, 5:]) == 0
    _close(out.cpu(), ref.detach(), "output")
    for name, gt, gr in zip(NAMES, grads, ref_grads):
        assert torch.isfinite(gt).all(), f"d{name} not finite"
        _close(gt.cpu(), gr, f"d{name}")
    assert torch.count_nonzero(grads[1][1]) == 0  # no key attended: no gradient reaches key_value


def test_attention_kernel_zero_lengths():
    q = torch.randn(3, 7, D, device=DEVICE)
    kv = torch.randn(3, 13, D, device=DEVICE)
    ql = torch.tensor([0, 7, 3], device=DEVICE)
    kl = torch.tensor([13, 0, 1], device=DEVICE)
    heads, lse = kernels.cga_attention_fwd(q, kv, kv, ql, kl, HEADS, "ieee")
    assert torch.isfinite(heads).all() and torch.isfinite(lse).all()
    assert torch.count_nonzero(heads[0]) == 0 and torch.count_nonzero(heads[1]) == 0
    assert torch.count_nonzero(heads[2, 3:]) == 0
    # one key: every valid row copies that key's value
    torch.testing.assert_close(heads[2, :3], kv[2, :1].expand(3, D), atol=1e-6, rtol=0)
    dq, dk, dv = kernels.cga_attention_bwd(torch.randn_like(heads), q, kv, kv, heads, lse, ql, kl, HEADS, "ieee")
    for t in (dq, dk, dv):
        assert torch.isfinite(t).all()
    assert torch.count_nonzero(dq[:2]) == 0 and torch.count_nonzero(dk[:2]) == 0 and torch.count_nonzero(dv[:2]) == 0
    assert torch.count_nonzero(dk[2, 1:]) == 0 and torch.count_nonzero(dv[2, 1:]) == 0


@pytest.mark.parametrize("two_pass", [False, True], ids=["fused-dq", "two-pass-dq"])
def test_attention_kernel_several_key_blocks(two_pass):
    """Online softmax over 3 key blocks of 16 (Lk = 33) and both backward schedules."""
    B, Lq, Lk = 2, 17, 33
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, L, D, generator=g, dtype=torch.float64) for L in (Lq, Lk, Lk))
    ql, kl = torch.tensor([17, 9]), torch.tensor([33, 20])
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    qh, kh, vh = (t.view(B, -1, HEADS, D // HEADS).transpose(1, 2) for t in leaves)
    s = (qh @ kh.transpose(-1, -2)) / math.sqrt(D // HEADS)
    s = s.masked_fill(~(torch.arange(Lk)[None, :] < kl[:, None])[:, None, None, :], float("-inf"))
    ref = (torch.softmax(s, -1) @ vh).transpose(1, 2).reshape(B, Lq, D)
    ref = ref * (torch.arange(Lq)[None, :] < ql[:, None])[..., None]
    grad = torch.randn(B, Lq, D, generator=g, dtype=torch.float64)
    ref.backward(grad)
    f32 = [t.to(DEVICE, torch.float32) for t in (q, k, v)]
    heads, lse = kernels.cga_attention_fwd(*f32, ql.to(DEVICE), kl.to(DEVICE), HEADS, "ieee", block_n=16)
    _close(heads.cpu(), ref.detach(), "heads")
    kw = dict(max_fused_keys=16, block_n=16) if two_pass else {}
    got = kernels.cga_attention_bwd(grad.to(DEVICE, torch.float32), *f32, heads, lse, ql.to(DEVICE), kl.to(DEVICE),
                                    HEADS, "ieee", **kw)
    for name, a, leaf in zip("qkv", got, leaves):
        _close(a.cpu(), leaf.grad, f"d{name}")


def test_padding_invariance():
    """A sample's output and gradients do not depend on its padding: garbage (huge values) in the
    padded rows changes nothing, and the sample alone, unpadded, gives the same result."""
    tensors, ql, kl = _inputs(2, 17, 33, [9, 17], [20, 33], separate=False)
    grad = torch.randn(2, 17, D, dtype=torch.float64)
    out, grads = _run_triton(tensors, ql, kl, grad)
    dirty = [t.clone() for t in tensors]
    dirty[0][0, 9:] = 1e4
    dirty[1][0, 20:] = -1e4
    out_dirty, grads_dirty = _run_triton(dirty, ql, kl, grad)
    assert torch.equal(out, out_dirty)
    for name, a, b in zip(NAMES, grads, grads_dirty):
        assert torch.equal(a, b), f"d{name} changed with the padding content"
    assert torch.count_nonzero(grads[0][0, 9:]) == 0 and torch.count_nonzero(grads[1][0, 20:]) == 0
    alone = [tensors[0][:1, :9], tensors[1][:1, :20]] + tensors[2:]
    out_alone, _ = _run_triton(alone, ql[:1], kl[:1], grad[:1, :9])
    torch.testing.assert_close(out[0, :9], out_alone[0], atol=1e-5, rtol=1e-5)


def test_backward_is_deterministic():
    tensors, ql, kl = _inputs(2, 17, 33, [17, 11], [29, 33], separate=True)
    grad = torch.randn(2, 17, D, dtype=torch.float64)
    _, first = _run_triton(tensors, ql, kl, grad)
    _, second = _run_triton(tensors, ql, kl, grad)
    for name, a, b in zip(NAMES, first, second):
        assert torch.equal(a, b), f"d{name} differs between two runs"


def test_non_contiguous_inputs():
    tensors, ql, kl = _inputs(2, 7, 13, [7, 4], [13, 6], separate=False)
    ref, _ = _run_reference(tensors, ql, kl)
    q = tensors[0].transpose(0, 1).contiguous().transpose(0, 1).float().to(DEVICE)
    kv = tensors[1].float().to(DEVICE).transpose(1, 2).contiguous().transpose(1, 2)
    params = [t.float().to(DEVICE) for t in tensors[2:]]
    params[0] = params[0].t().contiguous().t()
    assert not q.is_contiguous() and not kv.is_contiguous() and not params[0].is_contiguous()
    out = _call(cga_triton, q, kv, ql.to(DEVICE), kl.to(DEVICE), params, input_precision="ieee")
    _close(out.cpu(), ref, "output")


@pytest.mark.parametrize("separate", [False, True], ids=["shared", "separate"])
def test_gate_kernels_strided(separate):
    """Gate forward and backward on strided views of one buffer, as the op passes them."""
    B, Lq = 2, 7
    g = torch.Generator().manual_seed(2)
    buf = torch.randn(B * Lq, 3 * D, generator=g, dtype=torch.float64)
    x64, i64 = buf[:, D:2 * D].view(B, Lq, D), buf[:, 2 * D:].view(B, Lq, D)
    bg, bi = torch.randn(D, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)
    ql = torch.tensor([7, 3])
    leaves = [t.clone().requires_grad_() for t in (x64, i64, bg, bi)]
    x, i, b_g, b_i = leaves
    ref = torch.sigmoid(x + b_g) * ((i if separate else x) + b_i)
    ref = ref * (torch.arange(Lq)[None, :] < ql[:, None])[..., None]
    grad = torch.randn(B, Lq, D, generator=g, dtype=torch.float64)
    ref.backward(grad)
    buf32 = buf.float().to(DEVICE)
    xs, is_ = buf32[:, D:2 * D].view(B, Lq, D), buf32[:, 2 * D:].view(B, Lq, D)
    args = (xs, is_ if separate else None, bg.float().to(DEVICE), bi.float().to(DEVICE), ql.to(DEVICE))
    _close(kernels.cga_gate_fwd(*args).cpu(), ref.detach(), "gate")
    dx, di, dbg, dbi = kernels.cga_gate_bwd(grad.float().to(DEVICE).transpose(0, 1).contiguous().transpose(0, 1), *args)
    _close(dx.cpu(), leaves[0].grad, "dx")
    if separate:
        _close(di.cpu(), leaves[1].grad, "dinfo")
    else:
        assert di is None and leaves[1].grad is None
    _close(dbg.cpu(), leaves[2].grad, "db_gate")
    _close(dbi.cpu(), leaves[3].grad, "db_info")


def test_fusions_are_identities():
    """The algebra the fused path relies on, in float64: W^O folded into W_v^g (and W_v^i), and
    one GEMM over concatenated weights equals the separate projections."""
    tensors, ql, kl = _inputs(2, 7, 13, [7, 5], [13, 9], separate=True)
    q, kv = tensors[:2]
    w_q, w_k, w_v, w_o, w_gq, w_gv, b_g, b_i, w_iq, w_iv = tensors[2:]
    cma = cross_modal_attention(q, kv, ql, kl, w_q, w_k, w_v, w_o, HEADS)
    eye = torch.eye(D, dtype=torch.float64)
    heads = cross_modal_attention(q, kv, ql, kl, w_q, w_k, w_v, eye, HEADS)
    torch.testing.assert_close(cma @ w_gv.t(), heads @ (w_gv @ w_o).t(), atol=1e-12, rtol=1e-12)
    proj = q @ torch.cat([w_q, w_gq, w_iq]).t()
    for j, w in enumerate((w_q, w_gq, w_iq)):
        torch.testing.assert_close(proj[..., j * D:(j + 1) * D], q @ w.t(), atol=1e-12, rtol=1e-12)
    x = proj[..., D:2 * D] + heads @ (w_gv @ w_o).t()
    i = proj[..., 2 * D:] + heads @ (w_iv @ w_o).t()
    torch.testing.assert_close(torch.sigmoid(x + b_g) * (i + b_i),
                               information_gate(q, cma, w_gq, w_gv, b_g, b_i, w_iq, w_iv), atol=1e-12, rtol=1e-12)


def test_registered_ops_gradcheck_float64():
    """torch.autograd.gradcheck of the registered attention and gate ops (float64, tiny; head
    size 3 exercises the padding of the head dimension to 16)."""
    if DEVICE != "cpu":
        pytest.skip("float64 tl.dot is an interpreter-only check here")
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    ql, kl = torch.tensor([2]), torch.tensor([4])
    assert torch.autograd.gradcheck(
        lambda q, k, v: torch.ops.fian_fast.cga_attention(q, k, v, ql, kl, 2, "ieee")[0], (q, k, v))
    x, i = (torch.randn(1, 3, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    bg, bi = (torch.randn(8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda *a: torch.ops.fian_fast.cga_gate(*a, ql), (x, i, bg, bi))
    assert torch.autograd.gradcheck(lambda x, bg, bi: torch.ops.fian_fast.cga_gate(x, None, bg, bi, ql), (x, bg, bi))


@pytest.mark.parametrize("dtype,prec,lk,head_dim,fused", [
    (torch.bfloat16, "tf32", 200, 64, True),    # paper, words attend to video: one program per (b, h)
    (torch.float16, "tf32", 20, 64, True),      # video attends to words
    (torch.bfloat16, "tf32", 300, 64, False),
    (torch.bfloat16, "tf32", 200, 128, False),  # 4 heads of 128 (Charades preset at d = 512)
    (torch.float32, "ieee", 200, 64, False),
    (torch.float32, "ieee", 64, 64, True),
])
def test_attention_config_tiles(dtype, prec, lk, head_dim, fused):
    cfg = kernels.attention_config(dtype, prec, 20, lk, head_dim)
    assert (cfg["dq"] is None) == fused and cfg["bwd"]["WRITE_DQ"] == fused
    for part in filter(None, cfg.values()):
        assert min(part["BLOCK_M"], part["BLOCK_N"], part["BLOCK_D"]) >= 16  # every tl.dot dimension
        assert part["BLOCK_D"] >= head_dim
    if fused:
        assert cfg["bwd"]["BLOCK_N"] >= lk


_SM90_BUILD = r'''
import itertools, json, os, subprocess, sys, tempfile
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from fian_fast.kernels import cga as K

TARGET = GPUTarget("cuda", 90, 32)
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def build(fn, dtype, cfg):
    cfg = dict(cfg)
    warps = cfg.pop("num_warps")
    sig = {}
    for name in fn.arg_names:
        if name in cfg:
            sig[name] = "constexpr"
        elif name in ("lse_ptr", "dbg_part_ptr", "dbi_part_ptr"):
            sig[name] = "*fp32"
        elif name in ("qlen_ptr", "klen_ptr"):
            sig[name] = "*i64"
        elif name.endswith("_ptr"):
            sig[name] = "*" + NAMES[dtype]
        elif name.endswith("scale"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    kernel = triton.compile(ASTSource(fn, sig, cfg), target=TARGET, options={"num_warps": warps})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        usage = subprocess.run([CUOBJDUMP, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    fields = dict(tok.split(":") for tok in usage.split() if tok.count(":") == 1 and tok.split(":")[1].isdigit())
    return {"kernel": fn.__name__, "dtype": NAMES[dtype], "cfg": cfg, "warps": warps, "shared": kernel.metadata.shared,
            "regs": int(fields.get("REG", -1)), "stack": int(fields.get("STACK", -1))}


seen, rows = set(), []
cases = [(dt, "tf32", hd) for dt in (torch.bfloat16, torch.float16) for hd in (64, 128)]
cases += [(torch.float32, p, 64) for p in ("tf32", "tf32x3", "ieee")]
for (dtype, prec, hd), (lq, lk) in itertools.product(cases, [(20, 200), (200, 20), (30, 700)]):
    cfg = K.attention_config(dtype, prec, lq, lk, hd)
    jobs = [(K._cga_attn_fwd_kernel, cfg["fwd"]), (K._cga_attn_bwd_kernel, cfg["bwd"])]
    jobs += [(K._cga_attn_bwd_dq_kernel, cfg["dq"])] if cfg["dq"] else []
    for fn, c in jobs:
        key = (fn.__name__, dtype, tuple(sorted(c.items())))
        if key not in seen:
            seen.add(key)
            rows.append(build(fn, dtype, c))
for dtype, sep in itertools.product((torch.bfloat16, torch.float32), (False, True)):
    c = dict(SEPARATE=sep, BLOCK_M=K._GATE_BLOCK_M, BLOCK_D=K._GATE_BLOCK_D, FP64=False, num_warps=4)
    unused = {} if sep else {"i_ptr": None}  # the shared gate launches with None for info and dinfo
    rows += [build(K._cga_gate_fwd_kernel, dtype, {**c, **unused}),
             build(K._cga_gate_bwd_kernel, dtype, {**c, **unused, **({} if sep else {"di_ptr": None})})]
print(json.dumps(rows))
'''


def _nvidia_backend_available():
    try:
        import triton.backends.nvidia  # noqa: F401
    except ImportError:
        return False
    import os
    import triton
    return os.path.exists(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"))


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason="offline sm_90 build check for machines without a GPU (CI); with a GPU the CUDA tests "
                           "compile and run these kernels")
@pytest.mark.skipif(not _nvidia_backend_available(), reason="triton's NVIDIA backend (ptxas) is not installed")
def test_kernels_build_for_sm90_within_shared_memory():
    """Every tile configuration the launchers pick at the paper's shapes (and a 128-wide head)
    compiles for sm_90 ahead of time, without a GPU, and fits an H100/H200 block's 227 KiB of
    shared memory; register spills are allowed only where attention_config says so."""
    import json
    import os
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _SM90_BUILD], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rows) >= 10
    for r in rows:
        assert r["shared"] <= 232448, f"{r} needs more shared memory than an sm_90 block has"
        spill_ok = r["kernel"] == "_cga_attn_bwd_kernel" and r["dtype"] != "fp32" and r["cfg"]["BLOCK_N"] >= 256
        assert r["stack"] == 0 or spill_ok, f"{r} spills registers"


def test_heads_wider_than_the_widest_tile_are_refused():
    """BLOCK_D holds a whole head (at most 256 features): a wider head would be cut, so the
    kernels and cga_triton refuse it (fian_fast.ops.cga runs the reference instead)."""
    assert kernels.attention_config(torch.bfloat16, "tf32", 20, 200, 256)["fwd"]["BLOCK_D"] == 256
    with pytest.raises(ValueError, match="head_dim"):
        kernels.attention_config(torch.bfloat16, "tf32", 20, 200, 320)
    d = 512
    w = [torch.eye(d, device=DEVICE) for _ in range(6)]
    b = [torch.zeros(d, device=DEVICE) for _ in range(2)]
    ql, kl = torch.tensor([2], device=DEVICE), torch.tensor([3], device=DEVICE)
    with pytest.raises(ValueError, match="num_heads"):
        cga_triton(torch.randn(1, 2, d, device=DEVICE), torch.randn(1, 3, d, device=DEVICE), ql, kl,
                   CGAWeights(*w, *b), 1)


def test_strided_biases():
    """Biases given as strided views (every other element of a buffer) are read by stride, in
    the forward and the backward."""
    tensors, ql, kl = _inputs(2, 7, 13, [7, 4], [13, 6], separate=True)
    grad = torch.randn(2, 7, D, dtype=torch.float64)
    ref, ref_grads = _run_reference(tensors, ql, kl, grad)
    params = [t.float().to(DEVICE) for t in tensors[2:]]
    buffers = [torch.stack([params[j], torch.full_like(params[j], 1e3)], 1).requires_grad_() for j in (6, 7)]
    params[6], params[7] = buffers[0][:, 0], buffers[1][:, 0]
    assert not params[6].is_contiguous() and not params[7].is_contiguous()
    out = _call(cga_triton, tensors[0].float().to(DEVICE), tensors[1].float().to(DEVICE), ql.to(DEVICE), kl.to(DEVICE),
                params, input_precision="ieee")
    out.backward(grad.float().to(DEVICE))
    _close(out.cpu(), ref.detach(), "output")
    for name, buf, gr in zip(("b_gate", "b_info"), buffers, ref_grads[8:10]):
        _close(buf.grad[:, 0].cpu(), gr, f"d{name}")
        assert torch.count_nonzero(buf.grad[:, 1]) == 0


def _record_launches(monkeypatch):
    """Replaces the five kernels by recorders of (kernel name, grid, args, kwargs): launches are
    recorded, not run."""
    launches = []

    class Record:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((self.name, grid, args, kwargs))

    for name in ("_cga_attn_fwd_kernel", "_cga_attn_bwd_kernel", "_cga_attn_bwd_dq_kernel", "_cga_gate_fwd_kernel",
                 "_cga_gate_bwd_kernel"):
        monkeypatch.setattr(kernels, name, Record(name))
    return launches


def test_grids_fit_cuda_limits_for_large_batches(monkeypatch):
    """CUDA caps grid axes y and z at 65535 programs: B * H = 65536 (attention) and B = 65536
    (gate) must still launch, so the batch goes on axis x."""
    launches = _record_launches(monkeypatch)
    B, L = 65536, 1
    x = torch.zeros(B, L, D)
    lengths = torch.ones(B, dtype=torch.int64)
    heads, lse = kernels.cga_attention_fwd(x, x, x, lengths, lengths, 1)
    kernels.cga_attention_bwd(x, x, x, x, heads, lse, lengths, lengths, 1)
    kernels.cga_attention_bwd(x, x, x, x, heads, lse, lengths, lengths, 1, max_fused_keys=0)
    kernels.cga_gate_fwd(x, None, x[0, 0], x[0, 0], lengths)
    kernels.cga_gate_bwd(x, x, None, x[0, 0], x[0, 0], lengths)
    assert len(launches) == 6
    for _, grid, _, _ in launches:
        assert all(n <= 65535 for n in grid[1:]) and grid[0] < 2 ** 31, grid


@pytest.mark.parametrize("separate", [False, True], ids=["shared", "separate"])
def test_gate_launches_pass_no_buffer_twice(monkeypatch, separate):
    """Every pointer a gate kernel writes is its own buffer, overlapping no other argument (an
    aliased output would be unsafe for a compiler's functionalization); the shared gate passes
    None for info and dinfo."""
    launches = _record_launches(monkeypatch)
    B, Lq = 2, 7
    x, info, grad = (torch.randn(B, Lq, D) for _ in range(3))
    b_gate, b_info = torch.randn(D), torch.randn(D)
    ql = torch.tensor([7, 3])
    kernels.cga_gate_fwd(x, info if separate else None, b_gate, b_info, ql)
    kernels.cga_gate_bwd(grad, x, info if separate else None, b_gate, b_info, ql)
    written = {"_cga_gate_fwd_kernel": {"out_ptr"},
               "_cga_gate_bwd_kernel": {"dx_ptr", "di_ptr", "dbg_part_ptr", "dbi_part_ptr"}}
    for name, _, args, _ in launches:
        names = _KERNEL_ARGS[name]
        named = dict(zip(names, args))
        assert (named["i_ptr"] is not None) == separate
        if name == "_cga_gate_bwd_kernel":
            assert (named["di_ptr"] is not None) == separate
        for out in written[name]:
            t = named[out]
            if t is None:
                continue
            for other, u in named.items():
                if other != out and isinstance(u, torch.Tensor):
                    assert t.untyped_storage().data_ptr() != u.untyped_storage().data_ptr(), (name, out, other)


_KERNEL_ARGS = {name: getattr(kernels, name).arg_names for name in ("_cga_gate_fwd_kernel", "_cga_gate_bwd_kernel")}
