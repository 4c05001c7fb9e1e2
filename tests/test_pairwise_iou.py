"""fian_fast.ops.pairwise_iou against its reference: exact on the CPU, CUDA against CPU."""
import pytest
import torch

from fian_fast import reference
from fian_fast._extension import has_cuda_ops, has_ops
from fian_fast.ops import pairwise_iou

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")


def _intervals(B, N, dtype=torch.float32, scale=100.0):
    s = torch.rand(B, N, dtype=torch.float64) * scale
    e = s + torch.rand(B, N, dtype=torch.float64) * scale / 2
    return torch.stack([s, e], dim=-1).to(dtype)


@pytest.mark.parametrize("B,N,M", [(1, 1, 1), (3, 17, 5), (2, 113, 31)], ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_matches_reference(B, N, M, dtype):
    a, b = _intervals(B, N, dtype), _intervals(B, M, dtype)
    torch.testing.assert_close(pairwise_iou(a, b), reference.pairwise_iou(a, b), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_types(dtype):
    a, b = _intervals(2, 9, dtype), _intervals(2, 7, dtype)
    out = pairwise_iou(a, b)
    assert out.dtype == dtype
    torch.testing.assert_close(out, reference.pairwise_iou(a, b), rtol=0, atol=0)


def test_known_values():
    a = torch.tensor([[[0.0, 10.0], [0.0, 10.0], [5.0, 5.0], [0.0, 4.0]]])
    b = torch.tensor([[[5.0, 15.0], [10.0, 20.0], [5.0, 5.0]]])
    expected = torch.tensor([[[1 / 3, 0.0, 0.0], [1 / 3, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    torch.testing.assert_close(pairwise_iou(a, b), expected, rtol=0, atol=1e-7)


def test_identical_intervals_have_iou_one():
    a = _intervals(2, 6)
    diag = torch.diagonal(pairwise_iou(a, a), dim1=1, dim2=2)
    torch.testing.assert_close(diag, torch.ones_like(diag), rtol=0, atol=1e-6)


def test_empty_shapes():
    assert pairwise_iou(torch.zeros(0, 3, 2), torch.zeros(0, 4, 2)).shape == (0, 3, 4)
    assert pairwise_iou(torch.zeros(2, 0, 2), torch.zeros(2, 4, 2)).shape == (2, 0, 4)


def test_non_contiguous():
    a = _intervals(3, 10).transpose(0, 1).contiguous().transpose(0, 1)
    b = _intervals(3, 20)[:, ::2]
    assert not a.is_contiguous() and not b.is_contiguous()
    torch.testing.assert_close(pairwise_iou(a, b), reference.pairwise_iou(a, b), rtol=0, atol=0)


@pytest.mark.parametrize("args,match", [
    ((torch.zeros(2, 3), torch.zeros(2, 3, 2)), "a should be a 3-D"),
    ((torch.zeros(2, 3, 3), torch.zeros(2, 3, 2)), "a should have last dimension 2"),
    ((torch.zeros(2, 3, 2), torch.zeros(3, 3, 2)), "b should have size 2"),
    ((torch.zeros(2, 3, 2, dtype=torch.int64), torch.zeros(2, 3, 2)), "floating"),
    ((torch.zeros(2, 3, 2), torch.zeros(2, 3, 2, dtype=torch.float64)), "one dtype"),
])
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        pairwise_iou(*args)


def test_opcheck():
    torch.library.opcheck(torch.ops.fian_fast.pairwise_iou.default, (_intervals(2, 5), _intervals(2, 3)))


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cuda_matches_cpu(dtype):
    a, b = _intervals(4, 33, dtype), _intervals(4, 21, dtype)
    torch.testing.assert_close(pairwise_iou(a.cuda(), b.cuda()).cpu(), pairwise_iou(a, b), rtol=0, atol=1e-7)


def test_pairwise_iou_compiles_fullgraph():
    a = torch.tensor([[[0.0, 2.0], [1.0, 3.0]]])
    b = torch.tensor([[[1.0, 2.0], [0.0, 0.5], [2.5, 9.0]]])
    compiled = torch.compile(pairwise_iou, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(a, b), reference.pairwise_iou(a, b), rtol=0, atol=0)


def test_pairwise_iou_rejects_nan():
    a = torch.tensor([[[0.0, float("nan")]]])
    with pytest.raises(ValueError, match="pairwise_iou: a should hold no NaN"):
        pairwise_iou(a, torch.zeros(1, 1, 2))
