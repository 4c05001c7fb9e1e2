"""fian_fast.ops.window_score: forward and backward against per-scale Conv1d (the reference)."""
import pytest
import torch

from fian_fast import reference
from fian_fast._extension import has_cuda_ops, has_ops
from fian_fast.config import FIANConfig
from fian_fast.ops import window_score

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")

# (B, T, C, window_sizes, strides): the paper's stride k/8 and k/4, stride not dividing the
# window (gcd blocks), stride above the window (gaps), T not a multiple of the block.
CASES = {
    "B2-T32-C8-synthetic": (2, 32, 8, (4, 8, 12, 16), (1, 2, 3, 4)),
    "B3-T17-C5-odd": (3, 17, 5, (5, 2, 17), (3, 3, 1)),
    "B1-T113-C7-mixed": (1, 113, 7, (8, 24, 100), (6, 16, 7)),
    "B2-T50-C4-gaps": (2, 50, 4, (3,), (7,)),
}


def _inputs(B, T, C, sizes, dtype=torch.float32, requires_grad=False):
    x = torch.randn(B, T, C, dtype=dtype)
    ws = [torch.randn(3, C, k, dtype=dtype) / (C * k) ** 0.5 for k in sizes]
    bs = [torch.randn(3, dtype=dtype) for _ in sizes]
    if requires_grad:
        for t in [x, *ws, *bs]:
            t.requires_grad_(True)
    return x, ws, bs


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float64, 1e-12)], ids=["f32", "f64"])
def test_forward_matches_reference(case, dtype, tol):
    B, T, C, sizes, strides = CASES[case]
    x, ws, bs = _inputs(B, T, C, sizes, dtype)
    out = window_score(x, ws, bs, sizes, strides)
    ref = reference.window_score(x, ws, bs, sizes, strides)
    assert out.shape == ref.shape == (B, int(reference.window_candidates(T, sizes, strides).shape[0]), 3)
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_backward_matches_reference(case):
    B, T, C, sizes, strides = CASES[case]
    x, ws, bs = _inputs(B, T, C, sizes, torch.float64, requires_grad=True)
    g = torch.randn(B, int(reference.window_candidates(T, sizes, strides).shape[0]), 3, dtype=torch.float64)
    got = torch.autograd.grad(window_score(x, ws, bs, sizes, strides), [x, *ws, *bs], g)
    want = torch.autograd.grad(reference.window_score(x, ws, bs, sizes, strides), [x, *ws, *bs], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_gradcheck():
    x, ws, bs = _inputs(2, 11, 3, (4, 3), torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w0, w1, b0, b1: window_score(x, [w0, w1], [b0, b1], (4, 3), (2, 3)),
                                    (x, *ws, *bs))


def test_tacos_shapes_and_values():
    cfg = FIANConfig.preset("tacos")
    x, ws, bs = _inputs(2, cfg.num_frames, 16, cfg.window_sizes)
    out = window_score(x, ws, bs, cfg.window_sizes, cfg.strides)
    assert out.shape == (2, 347, 3)
    torch.testing.assert_close(out, reference.window_score(x, ws, bs, cfg.window_sizes, cfg.strides),
                               rtol=2e-5, atol=2e-5)


def test_non_contiguous():
    B, T, C, sizes, strides = CASES["B3-T17-C5-odd"]
    x = torch.randn(B, C, T).transpose(1, 2)
    ws = [torch.randn(3, k, C).transpose(1, 2) for k in sizes]
    bs = [torch.randn(6)[::2] for _ in sizes]
    assert not x.is_contiguous() and not ws[0].is_contiguous() and not bs[0].is_contiguous()
    torch.testing.assert_close(window_score(x, ws, bs, sizes, strides),
                               reference.window_score(x, ws, bs, sizes, strides), rtol=2e-5, atol=2e-5)


def test_bfloat16_close_to_float32():
    B, T, C, sizes, strides = CASES["B2-T32-C8-synthetic"]
    x, ws, bs = _inputs(B, T, C, sizes)
    out = window_score(x.bfloat16(), [w.bfloat16() for w in ws], [b.bfloat16() for b in bs], sizes, strides)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference.window_score(x, ws, bs, sizes, strides), rtol=3e-2, atol=3e-2)


def test_empty_batch():
    x, ws, bs = _inputs(0, 20, 4, (4, 8), requires_grad=True)
    out = window_score(x, ws, bs, (4, 8), (2, 4))
    assert out.shape == (0, 9 + 4, 3)
    out.sum().backward()
    assert x.grad.shape == x.shape and float(ws[0].grad.abs().sum()) == 0.0


def test_window_equal_to_sequence():
    x, ws, bs = _inputs(2, 9, 3, (9,))
    torch.testing.assert_close(window_score(x, ws, bs, (9,), (4,)), reference.window_score(x, ws, bs, (9,), (4,)),
                               rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("mutate,match", [
    (lambda a: a.update(features=a["features"][0]), "features should be a 3-D"),
    (lambda a: a.update(window_sizes=(4, 40)), "window_sizes"),
    (lambda a: a.update(strides=(0, 2)), "strides"),
    (lambda a: a.update(strides=(2,)), "one length"),
    (lambda a: a.update(weights=a["weights"][:1]), "one tensor per scale"),
    (lambda a: a.update(weights=[a["weights"][0], a["weights"][0]]), r"weights\[1\]"),
    (lambda a: a.update(biases=[a["biases"][0], torch.zeros(4)]), r"biases\[1\]"),
    (lambda a: a.update(features=a["features"].long()), "floating"),
    (lambda a: a.update(biases=[a["biases"][0], torch.zeros(3, device="meta")]), "should be on"),
])
def test_bad_inputs(mutate, match):
    x, ws, bs = _inputs(2, 20, 4, (4, 8))
    args = dict(features=x, weights=ws, biases=bs, window_sizes=(4, 8), strides=(2, 4))
    mutate(args)
    with pytest.raises(ValueError, match=match):
        window_score(**args)


def test_opcheck():
    x, ws, bs = _inputs(2, 12, 3, (4, 6), requires_grad=True)
    torch.library.opcheck(torch.ops.fian_fast.window_score.default, (x, ws, bs, [4, 6], [2, 3]))
    g = torch.randn(2, 5 + 3, 3)
    torch.library.opcheck(torch.ops.fian_fast.window_score_backward.default,
                          (g, x.detach(), [w.detach() for w in ws], [4, 6], [2, 3]))


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
@pytest.mark.parametrize("case", sorted(CASES) + ["activitynet"])
def test_cuda_matches_cpu(case):
    if case == "activitynet":
        cfg = FIANConfig.preset("activitynet")
        B, T, C, sizes, strides = 4, cfg.num_frames, 64, cfg.window_sizes, cfg.strides
    else:
        B, T, C, sizes, strides = CASES[case]
    x, ws, bs = _inputs(B, T, C, sizes, torch.float64, requires_grad=True)
    n = int(reference.window_candidates(T, sizes, strides).shape[0])
    g = torch.randn(B, n, 3, dtype=torch.float64)
    cpu_out = window_score(x, ws, bs, sizes, strides)
    cpu_grads = torch.autograd.grad(cpu_out, [x, *ws, *bs], g)
    xc, wc, bc = (x.detach().cuda().requires_grad_(), [w.detach().cuda().requires_grad_() for w in ws],
                  [b.detach().cuda().requires_grad_() for b in bs])
    cuda_out = window_score(xc, wc, bc, sizes, strides)
    cuda_grads = torch.autograd.grad(cuda_out, [xc, *wc, *bc], g.cuda())
    torch.testing.assert_close(cuda_out.cpu(), cpu_out, rtol=1e-10, atol=1e-10)
    for a, b in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-10)


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
def test_cuda_bfloat16_close_to_float32():
    cfg = FIANConfig.preset("activitynet")
    x, ws, bs = _inputs(2, cfg.num_frames, 32, cfg.window_sizes)
    ref = reference.window_score(x, ws, bs, cfg.window_sizes, cfg.strides)
    out = window_score(x.cuda().bfloat16(), [w.cuda().bfloat16() for w in ws], [b.cuda().bfloat16() for b in bs],
                       cfg.window_sizes, cfg.strides)
    torch.testing.assert_close(out.float().cpu(), ref, rtol=3e-2, atol=3e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
@pytest.mark.parametrize("B", [1, 5, 128], ids=lambda b: f"B{b}")
def test_cuda_backward_batch_chunks_deterministic(B):
    """B = 128 at ActivityNet's 7 scales splits the weight-gradient reduction over batch chunks
    (B = 1 cannot be split): the result matches the float64 CPU kernel, two runs are bitwise
    equal, and every gradient is an allocation of its own."""
    cfg = FIANConfig.preset("activitynet")
    C = 64
    x, ws, bs = _inputs(B, cfg.num_frames, C, cfg.window_sizes, torch.float64)
    n = int(reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides).shape[0])
    g = torch.randn(B, n, 3, dtype=torch.float64)
    args = (cfg.window_sizes, cfg.strides)
    dx, dw, db = torch.ops.fian_fast.window_score_backward(g, x, ws, *args)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        gc, xc, wc = g.cuda().to(dtype), x.cuda().to(dtype), [w.cuda().to(dtype) for w in ws]
        first = torch.ops.fian_fast.window_score_backward(gc, xc, wc, *args)
        second = torch.ops.fian_fast.window_score_backward(gc, xc, wc, *args)
        torch.testing.assert_close(first[0].cpu().double(), dx, rtol=tol, atol=tol)
        for a, b, c in zip(first[1] + first[2], second[1] + second[2], dw + db):
            assert torch.equal(a, b)
            torch.testing.assert_close(a.cpu().double(), c, rtol=tol, atol=tol * B)
        assert torch.equal(first[0], second[0])
        pointers = [t.untyped_storage().data_ptr() for t in first[1] + first[2]]
        assert len(set(pointers)) == len(pointers) and all(t._base is None for t in first[1] + first[2])


def test_gradients_are_separate_allocations():
    x, ws, bs = _inputs(2, 32, 8, (4, 8, 12))
    n = int(reference.window_candidates(32, (4, 8, 12), (1, 2, 3)).shape[0])
    _, dw, db = torch.ops.fian_fast.window_score_backward(torch.randn(2, n, 3), x, ws, (4, 8, 12), (1, 2, 3))
    pointers = [t.untyped_storage().data_ptr() for t in dw + db]
    assert len(set(pointers)) == len(pointers)


def _cuobjdump():
    import os
    import shutil
    from torch.utils.cpp_extension import CUDA_HOME
    candidates = [shutil.which("cuobjdump")]
    if CUDA_HOME:
        candidates.append(os.path.join(CUDA_HOME, "bin", "cuobjdump"))
    try:
        import triton
        candidates.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump"))
    except ImportError:
        pass
    return next((c for c in candidates if c and os.path.exists(c)), None)


@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
@pytest.mark.skipif(_cuobjdump() is None, reason="cuobjdump not found")
def test_cuda_kernels_fit_registers_without_spills():
    """The built extension's window_score kernels (every dtype and architecture compiled, sm_90
    by default) use no stack or local memory: no register spills."""
    import re
    import subprocess
    from fian_fast import _C
    usage = subprocess.run([_cuobjdump(), "--dump-resource-usage", _C.__file__], capture_output=True, text=True,
                           timeout=120).stdout
    rows = re.findall(r"Function (\S*window_score_(\w+?)_kernel\S*):\s*REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)",
                      usage)
    kinds = {kind for _, kind, *_ in rows}
    assert {"fwd", "dx", "dw", "dw_reduce", "db"} <= kinds, kinds
    for name, kind, reg, stack, local in rows:
        assert int(stack) == 0 and int(local) == 0, f"{kind}: {reg} registers, stack {stack}, local {local}"
