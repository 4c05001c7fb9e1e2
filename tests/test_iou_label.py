"""fian_fast.ops.iou_label: IoU, positive flags and offset targets (eq. 15-17) against the reference."""
import pytest
import torch

from fian_fast import reference
from fian_fast._extension import has_cuda_ops, has_ops
from fian_fast.config import FIANConfig
from fian_fast.ops import iou_label

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")


def _gt(B, T=200.0, dtype=torch.float32):
    s = torch.rand(B, dtype=torch.float64) * T * 0.8
    e = s + torch.rand(B, dtype=torch.float64) * (T - s)
    return torch.stack([s, e], dim=1).to(dtype)


def _assert_same(got, want):
    iou, pos, off = got
    torch.testing.assert_close(iou, want[0], rtol=0, atol=0)
    assert torch.equal(pos, want[1])
    torch.testing.assert_close(off, want[2], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "batched"])
def test_matches_reference(dtype, shared):
    cfg = FIANConfig.preset("tacos")
    cand = reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides).to(dtype)
    gt = _gt(5, dtype=dtype)
    if not shared:
        cand = (cand + torch.rand(5, cand.shape[0], 1, dtype=dtype)).contiguous()
    got = iou_label(cand, gt, 0.55)
    _assert_same(got, reference.iou_label(cand, gt, 0.55))
    assert got[0].shape == (5, cand.shape[-2]) and got[1].dtype == torch.bool and got[2].shape == (5, cand.shape[-2], 2)


@pytest.mark.parametrize("tau", [0.3, 0.55, 0.7])
def test_threshold_boundary_float64(tau):
    # gt (0, 1) and candidate (0, x), x < 1, have IoU x (up to one rounding of the union):
    # x = τ ± 1e-6 falls on either side; x = τ must agree with the reference bit for bit.
    xs = torch.tensor([tau - 1e-6, tau, tau + 1e-6], dtype=torch.float64)
    cand = torch.stack([torch.zeros_like(xs), xs], dim=1)
    gt = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    iou, pos, off = iou_label(cand, gt, tau)
    assert pos[0, 0].item() is False and pos[0, 2].item() is True
    torch.testing.assert_close(iou[0], xs, rtol=0, atol=1e-15)
    _assert_same((iou, pos, off), reference.iou_label(cand, gt, tau))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_types(dtype):
    cand = reference.window_candidates(64, (16, 24), (2, 3)).to(dtype)
    gt = _gt(3, T=64.0, dtype=dtype)
    got = iou_label(cand, gt, 0.5)
    assert got[0].dtype == dtype
    _assert_same(got, reference.iou_label(cand, gt, 0.5))


def test_mixed_dtypes_promote():
    cand = reference.window_candidates(32, (8,), (4,))
    gt = _gt(2, T=32.0, dtype=torch.float64)
    got = iou_label(cand, gt, 0.5)
    assert got[0].dtype == torch.float64
    _assert_same(got, reference.iou_label(cand, gt, 0.5))


def test_known_values():
    cand = torch.tensor([[0.0, 10.0], [5.0, 15.0], [20.0, 30.0], [0.0, 20.0]])
    gt = torch.tensor([[0.0, 10.0], [10.0, 20.0]])
    iou, pos, off = iou_label(cand, gt, 0.5)
    torch.testing.assert_close(iou, torch.tensor([[1.0, 1 / 3, 0.0, 0.5], [0.0, 1 / 3, 0.0, 0.5]]), rtol=0, atol=1e-7)
    assert pos.tolist() == [[True, False, False, False], [False, False, False, False]]
    torch.testing.assert_close(off[1, 1], torch.tensor([5.0, 5.0]), rtol=0, atol=0)


def test_empty_and_single():
    iou, pos, off = iou_label(torch.zeros(0, 2), torch.zeros(3, 2), 0.5)
    assert iou.shape == (3, 0) and pos.shape == (3, 0) and off.shape == (3, 0, 2)
    iou, pos, off = iou_label(torch.zeros(0, 4, 2), torch.zeros(0, 2), 0.5)
    assert iou.shape == (0, 4) and off.shape == (0, 4, 2)
    cand, gt = torch.tensor([[2.0, 6.0]]), torch.tensor([[4.0, 8.0]])
    _assert_same(iou_label(cand, gt, 0.3), reference.iou_label(cand, gt, 0.3))


def test_non_contiguous():
    cand = reference.window_candidates(50, (10, 20), (5, 5)).t().contiguous().t()
    gt = _gt(8, T=50.0)[::2]
    assert not cand.is_contiguous() and not gt.is_contiguous()
    _assert_same(iou_label(cand, gt, 0.5), reference.iou_label(cand, gt, 0.5))


@pytest.mark.parametrize("args,match", [
    ((torch.zeros(4, 3), torch.zeros(2, 2), 0.5), "candidates should have last dimension 2"),
    ((torch.zeros(2, 4, 2, 2), torch.zeros(2, 2), 0.5), "candidates should be"),
    ((torch.zeros(3, 4, 2), torch.zeros(2, 2), 0.5), "one batch size"),
    ((torch.zeros(4, 2), torch.zeros(2, 3), 0.5), "gt should have last dimension 2"),
    ((torch.zeros(4, 2), torch.zeros(2, 2), 1.5), "tau"),
    ((torch.zeros(4, 2), torch.zeros(2, 2), -0.1), "tau"),
    ((torch.zeros(4, 2), torch.zeros(2, 2), float("nan")), "tau"),
    ((torch.tensor([[3.0, 1.0]]), torch.zeros(2, 2), 0.5), "start <= end"),
    ((torch.zeros(4, 2), torch.tensor([[0.0, float("nan")]]), 0.5), "NaN"),
    ((torch.zeros(4, 2, dtype=torch.int64), torch.zeros(2, 2), 0.5), "floating"),
    ((torch.zeros(4, 2), torch.zeros(2, 2, device="meta"), 0.5), "one device"),
])
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        iou_label(*args)


def test_opcheck():
    cand = reference.window_candidates(32, (8, 16), (2, 4))
    torch.library.opcheck(torch.ops.fian_fast.iou_label.default, (cand, _gt(3, T=32.0), 0.55))
    torch.library.opcheck(torch.ops.fian_fast.iou_label.default, (cand.expand(3, -1, -1), _gt(3, T=32.0), 0.55))


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["f32", "f64", "bf16"])
def test_cuda_matches_cpu(dtype):
    cfg = FIANConfig.preset("tacos")
    cand = reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides).to(dtype)
    gt = _gt(64, dtype=dtype)
    cpu = iou_label(cand, gt, 0.55)
    gpu = iou_label(cand.cuda(), gt.cuda(), 0.55)
    _assert_same(tuple(t.cpu() for t in gpu), cpu)
    gpu = iou_label(cand.cuda().expand(64, -1, -1), gt.cuda(), 0.55)
    _assert_same(tuple(t.cpu() for t in gpu), cpu)
