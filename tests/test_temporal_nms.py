"""fian_fast.ops.temporal_nms: greedy NMS (strict >, ties by index, -1 padding) against the reference."""
import pytest
import torch

from fian_fast import reference
from fian_fast._extension import has_cuda_ops, has_ops
from fian_fast.config import FIANConfig
from fian_fast.ops import temporal_nms

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")


def _segments(B, N, T=100.0, dtype=torch.float32):
    s = torch.rand(B, N, dtype=torch.float64) * T
    e = s + torch.rand(B, N, dtype=torch.float64) * T / 4
    return torch.stack([s, e], dim=-1).to(dtype)


def _tied_scores(B, N, levels=4, dtype=torch.float32):
    # Few distinct values: many ties, which must resolve to the lower index.
    return (torch.randint(0, levels, (B, N)).to(dtype) / levels)


@pytest.mark.parametrize("B,N,top_k", [(1, 1, 1), (3, 17, 5), (4, 113, 10), (2, 347, 400)],
                         ids=["B1-N1-k1", "B3-N17-k5", "B4-N113-k10", "B2-N347-k400"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("masked", [False, True], ids=["all-valid", "masked"])
def test_matches_reference(B, N, top_k, dtype, ties, masked):
    seg = _segments(B, N, dtype=dtype)
    scores = _tied_scores(B, N, dtype=dtype) if ties else torch.randn(B, N, dtype=dtype)
    valid = torch.rand(B, N) > 0.3 if masked else None
    for thr in (0.0, 0.3, 0.7, 1.0):
        got = temporal_nms(seg, scores, thr, top_k, valid)
        assert got.dtype == torch.int64 and got.shape == (B, top_k)
        assert torch.equal(got, reference.temporal_nms(seg, scores, thr, top_k, valid))


def test_threshold_boundary_float64():
    # Segment 0 = (0, 1) wins; segment j = (0, x_j) has IoU x_j with it. x = t - 1e-6 survives,
    # x = t + 1e-6 is suppressed at threshold t.
    for t in (0.3, 0.5, 0.55, 0.7):
        xs = [1.0, t - 1e-6, t + 1e-6]
        seg = torch.tensor([[[0.0, x] for x in xs]], dtype=torch.float64)
        scores = torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64)
        got = temporal_nms(seg, scores, t, 3)
        assert got.tolist() == [[0, 1, -1]]
        assert torch.equal(got, reference.temporal_nms(seg, scores, t, 3))


def test_equal_iou_is_not_suppressed():
    seg = torch.tensor([[[0.0, 4.0], [0.0, 2.0]]])  # IoU exactly 0.5
    assert temporal_nms(seg, torch.tensor([[1.0, 0.5]]), 0.5, 2).tolist() == [[0, 1]]
    assert temporal_nms(seg, torch.tensor([[1.0, 0.5]]), 0.49, 2).tolist() == [[0, -1]]


def test_ties_lower_index_first():
    seg = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [0.0, 1.0]]])
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5]])
    assert temporal_nms(seg, scores, 0.5, 4).tolist() == [[1, 0, 2, -1]]


def test_empty_and_degenerate():
    assert temporal_nms(torch.zeros(0, 5, 2), torch.zeros(0, 5), 0.5, 3).shape == (0, 3)
    assert temporal_nms(torch.zeros(2, 0, 2), torch.zeros(2, 0), 0.5, 3).tolist() == [[-1] * 3] * 2
    seg, scores = _segments(2, 6), torch.randn(2, 6)
    none = torch.zeros(2, 6, dtype=torch.bool)
    assert temporal_nms(seg, scores, 0.5, 4, none).tolist() == [[-1] * 4] * 2
    assert temporal_nms(seg[:, :1], scores[:, :1], 0.5, 3).tolist() == [[0, -1, -1]] * 2


def test_infinite_scores_rank():
    seg = _segments(1, 3)
    seg[0, :, 0] = torch.tensor([0.0, 10.0, 20.0])
    seg[0, :, 1] = seg[0, :, 0] + 1
    scores = torch.tensor([[float("-inf"), float("inf"), 0.0]])
    assert temporal_nms(seg, scores, 0.5, 3).tolist() == [[1, 2, 0]]


def test_non_contiguous():
    seg = _segments(6, 30).transpose(0, 1).contiguous().transpose(0, 1)[::2]
    scores = torch.randn(30, 6).t()[::2]
    valid = (torch.rand(30, 6) > 0.2).t()[::2]
    assert not seg.is_contiguous() and not scores.is_contiguous() and not valid.is_contiguous()
    assert torch.equal(temporal_nms(seg, scores, 0.4, 7, valid), reference.temporal_nms(seg, scores, 0.4, 7, valid))


def test_half_types():
    seg, scores = _segments(3, 40, dtype=torch.bfloat16), _tied_scores(3, 40, dtype=torch.bfloat16)
    assert torch.equal(temporal_nms(seg, scores, 0.5, 6), reference.temporal_nms(seg, scores, 0.5, 6))


@pytest.mark.parametrize("kwargs,match", [
    (dict(scores=torch.tensor([[0.1, float("nan"), 0.3]])), "NaN"),
    (dict(segments=torch.tensor([[[0.0, 1.0], [5.0, 2.0], [0.0, 1.0]]])), "start <= end"),
    (dict(iou_threshold=1.2), "iou_threshold"),
    (dict(iou_threshold=-0.5), "iou_threshold"),
    (dict(top_k=0), "top_k"),
    (dict(top_k=2.0), "top_k"),
    (dict(valid=torch.ones(1, 3)), "bool"),
    (dict(valid=torch.ones(1, 4, dtype=torch.bool)), "valid should have size"),
    (dict(scores=torch.zeros(1, 3, dtype=torch.float64)), "dtype of segments"),
    (dict(scores=torch.zeros(2, 3)), "scores should have size"),
    (dict(segments=torch.zeros(3, 2)), "segments should be a 3-D"),
    (dict(scores=torch.zeros(1, 3, device="meta")), "one device"),
])
def test_bad_inputs(kwargs, match):
    args = dict(segments=torch.tensor([[[0.0, 1.0], [0.5, 2.0], [3.0, 4.0]]]), scores=torch.tensor([[0.1, 0.2, 0.3]]),
                iou_threshold=0.5, top_k=2, valid=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        temporal_nms(**args)


def test_opcheck():
    seg, scores = _segments(3, 20), _tied_scores(3, 20)
    torch.library.opcheck(torch.ops.fian_fast.temporal_nms.default, (seg, scores, 0.5, 5))
    torch.library.opcheck(torch.ops.fian_fast.temporal_nms.default, (seg, scores, 0.5, 5, torch.rand(3, 20) > 0.5))


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
@pytest.mark.parametrize("N", [1, 33, 347, 1500], ids=lambda n: f"N{n}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=["f32", "f64", "f16"])
def test_cuda_matches_cpu(N, dtype):
    B = 16
    seg, scores = _segments(B, N, dtype=dtype), _tied_scores(B, N, levels=8, dtype=dtype)
    valid = torch.rand(B, N) > 0.2
    for thr, k in ((0.0, 3), (0.5, 5), (0.7, N + 2)):
        cpu = temporal_nms(seg, scores, thr, k, valid)
        gpu = temporal_nms(seg.cuda(), scores.cuda(), thr, k, valid.cuda())
        assert torch.equal(gpu.cpu(), cpu)
        assert torch.equal(temporal_nms(seg.cuda(), scores.cuda(), thr, k).cpu(), temporal_nms(seg, scores, thr, k))


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
def test_cuda_tacos_batch():
    cfg = FIANConfig.preset("tacos")
    cand = reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides)
    seg = cand.expand(128, -1, -1).contiguous()
    scores = torch.randn(128, cand.shape[0])
    assert torch.equal(temporal_nms(seg.cuda(), scores.cuda(), 0.5, 5).cpu(), temporal_nms(seg, scores, 0.5, 5))
