"""fian_fast.ops.decode: refine + sigmoid + NMS + seconds against the reference; one compiled
pipeline of the localization ops under torch.compile(fullgraph=True)."""
import pytest
import torch

from fian_fast import ops, reference
from fian_fast._extension import has_cuda_ops, has_ops
from fian_fast.config import FIANConfig
from fian_fast.ops import decode

pytestmark = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")


def _batch(B, cfg_name="tacos", dtype=torch.float32, ties=False):
    cfg = FIANConfig.preset(cfg_name)
    cand = reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides).to(dtype)
    N = cand.shape[0]
    logits = (torch.randint(-2, 3, (B, N)).to(dtype) if ties else torch.randn(B, N, dtype=dtype) * 3)
    offsets = torch.randn(B, N, 2, dtype=dtype) * 4
    lengths = torch.randint(1, cfg.num_frames + 1, (B,))
    lengths[0] = cfg.num_frames
    durations = torch.rand(B, dtype=dtype) * 100 + 1
    return cand, logits, offsets, lengths, durations


def _assert_matches(got, want):
    seg, score, idx = got
    assert seg.dtype == torch.float32 and score.dtype == torch.float32 and idx.dtype == torch.int64
    assert torch.equal(idx, want[2])
    torch.testing.assert_close(seg, want[0], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(score, want[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("masked", [False, True], ids=["default-valid", "mask"])
@pytest.mark.parametrize("preset", ["tacos", "charades", "activitynet"])
def test_matches_reference(dtype, ties, masked, preset):
    cand, logits, offsets, lengths, durations = _batch(6, preset, dtype, ties)
    valid = torch.rand(logits.shape) > 0.3 if masked else None
    for thr, n in ((0.5, 5), (0.0, 3), (1.0, 7)):
        _assert_matches(decode(cand, logits, offsets, lengths, durations, thr, n, valid),
                        reference.decode(cand, logits, offsets, lengths, durations, thr, n, valid))


def test_refine_reorder_clip_and_seconds():
    cand = torch.tensor([[10.0, 20.0], [30.0, 40.0], [60.0, 70.0]])
    logits = torch.tensor([[2.0, 1.0, 3.0]])
    offsets = torch.tensor([[[15.0, -15.0], [-40.0, 20.0], [0.0, 0.0]]])  # crossed; clipped; out of video
    seg, score, idx = decode(cand, logits, offsets, torch.tensor([50]), torch.tensor([25.0]), 0.9, 3)
    assert idx.tolist() == [[0, 1, -1]]  # candidate 2 starts past the video: invalid by default
    torch.testing.assert_close(seg, torch.tensor([[[2.5, 12.5], [0.0, 25.0], [0.0, 0.0]]]), rtol=0, atol=1e-6)
    torch.testing.assert_close(score, torch.tensor([[torch.sigmoid(torch.tensor(2.0)).item(),
                                                     torch.sigmoid(torch.tensor(1.0)).item(), 0.0]]))


def test_threshold_boundary_float64():
    # Refined (0, 1) wins; (0, x) has IoU x with it; x = t - 1e-6 stays, t + 1e-6 goes.
    for t in (0.3, 0.5, 0.7):
        xs = [1.0, t - 1e-6, t + 1e-6]
        cand = torch.tensor([[0.0, x] for x in xs], dtype=torch.float64)
        logits = torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64)
        args = (cand, logits, torch.zeros(1, 3, 2, dtype=torch.float64), torch.tensor([10]),
                torch.tensor([10.0], dtype=torch.float64), t, 3)
        got = decode(*args)
        assert got[2].tolist() == [[0, 1, -1]]
        _assert_matches(got, reference.decode(*args))


def test_padding_and_degenerate():
    cand, logits, offsets, lengths, durations = _batch(3)
    none = torch.zeros(logits.shape, dtype=torch.bool)
    seg, score, idx = decode(cand, logits, offsets, lengths, durations, 0.5, 4, none)
    assert idx.tolist() == [[-1] * 4] * 3 and seg.abs().sum() == 0 and score.abs().sum() == 0
    seg, score, idx = decode(cand[:0], logits[:0, :0], offsets[:0, :0], lengths[:0], durations[:0], 0.5, 4)
    assert seg.shape == (0, 4, 2) and score.shape == (0, 4) and idx.shape == (0, 4)
    one = decode(cand[:1], logits[:, :1], offsets[:, :1], lengths, durations, 0.5, 2)
    _assert_matches(one, reference.decode(cand[:1], logits[:, :1], offsets[:, :1], lengths, durations, 0.5, 2))


def test_non_contiguous():
    cand, logits, offsets, lengths, durations = _batch(8)
    args = (cand.t().contiguous().t(), logits[::2], offsets.transpose(1, 2).contiguous().transpose(1, 2)[::2],
            lengths[::2], durations[::2], 0.5, 5)
    assert not args[0].is_contiguous() and not args[1].is_contiguous() and not args[2].is_contiguous()
    _assert_matches(decode(*args), reference.decode(*args))


@pytest.mark.parametrize("kwargs,match", [
    (dict(logits=torch.tensor([[0.1, float("nan")]])), "logits should hold no NaN"),
    (dict(offsets=torch.full((1, 2, 2), float("nan"))), "offsets should hold no NaN"),
    (dict(candidates=torch.tensor([[3.0, 1.0], [0.0, 2.0]])), "start <= end"),
    (dict(video_lengths=torch.tensor([0])), "video_lengths"),
    (dict(video_lengths=torch.tensor([4.0])), "video_lengths should be an integer"),
    (dict(durations=torch.tensor([-1.0])), "durations"),
    (dict(iou_threshold=2.0), "iou_threshold"),
    (dict(top_n=0), "top_n"),
    (dict(logits=torch.zeros(1, 3)), "logits should have size"),
    (dict(offsets=torch.zeros(1, 2, 3)), "offsets should"),
    (dict(valid=torch.ones(1, 2, dtype=torch.int64)), "bool"),
    (dict(durations=torch.ones(1, device="meta")), "one device"),
])
def test_bad_inputs(kwargs, match):
    args = dict(candidates=torch.tensor([[0.0, 2.0], [1.0, 3.0]]), logits=torch.zeros(1, 2), offsets=torch.zeros(1, 2, 2),
                video_lengths=torch.tensor([4]), durations=torch.tensor([8.0]), iou_threshold=0.5, top_n=2, valid=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        decode(**args)


def test_opcheck():
    cand, logits, offsets, lengths, durations = _batch(3, "charades")
    torch.library.opcheck(torch.ops.fian_fast.decode.default, (cand, logits, offsets, lengths, durations, 0.5, 5))
    torch.library.opcheck(torch.ops.fian_fast.decode.default,
                          (cand, logits, offsets, lengths, durations, 0.5, 5, torch.rand(logits.shape) > 0.5))


def test_compiled_pipeline_matches_eager():
    cfg = FIANConfig.preset("synthetic")
    cand = reference.window_candidates(cfg.num_frames, cfg.window_sizes, cfg.strides)
    x = torch.randn(3, cfg.num_frames, 8)
    ws = [torch.randn(3, 8, k) * 0.2 for k in cfg.window_sizes]
    bs = [torch.zeros(3) for _ in cfg.window_sizes]
    gt = torch.tensor([[2.0, 10.0], [0.0, 31.0], [5.0, 6.0]])
    lengths, durations = torch.tensor([32, 20, 9]), torch.tensor([10.0, 20.0, 30.0])

    def pipeline(x, cand, gt, lengths, durations):
        out = ops.window_score(x, ws, bs, cfg.window_sizes, cfg.strides)
        iou, pos, target = ops.iou_label(cand, gt, cfg.tau)
        keep = ops.temporal_nms(cand.expand(x.shape[0], -1, -1), out[..., 0], 0.5, 4)
        seg, score, idx = ops.decode(cand, out[..., 0], out[..., 1:], lengths, durations, 0.5, 3)
        return out, iou, pos, target, keep, seg, score, idx

    eager = pipeline(x, cand, gt, lengths, durations)
    compiled = torch.compile(pipeline, fullgraph=True, backend="aot_eager")(x, cand, gt, lengths, durations)
    for a, b in zip(compiled, eager):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not has_cuda_ops(), reason="fian_fast._C built without CUDA")
@pytest.mark.parametrize("preset", ["tacos", "activitynet"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cuda_matches_cpu(preset, dtype):
    cand, logits, offsets, lengths, durations = _batch(64, preset, dtype, ties=True)
    valid = torch.rand(logits.shape) > 0.1
    for v in (None, valid):
        cpu = decode(cand, logits, offsets, lengths, durations, 0.5, 5, v)
        gpu = decode(cand.cuda(), logits.cuda(), offsets.cuda(), lengths.cuda(), durations.cuda(), 0.5, 5,
                     None if v is None else v.cuda())
        assert torch.equal(gpu[2].cpu(), cpu[2])
        torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("durations", [[8.0, 0.0], [8.0, -1.0], [float("nan"), 8.0], [float("inf"), 8.0]])
def test_one_durations_rule_everywhere(durations):
    """ops.decode, FIAN.decode and the loader's batch check refuse the same durations with one message."""
    from fian_fast import FIAN
    from fian_fast._validation import check_batch
    from model_inputs import tiny

    bad = torch.tensor(durations)
    msg = r"durations should be finite and > 0 seconds"
    cand, logits, offsets, lengths, _ = _batch(2)
    with pytest.raises(ValueError, match="decode: " + msg):
        decode(cand, logits, offsets, lengths, bad, 0.5, 3)
    model = FIAN(tiny()).eval()
    cfg = model.cfg
    x = (torch.randn(2, cfg.num_frames, cfg.video_dim), torch.tensor([cfg.num_frames, 3]),
         torch.randn(2, 3, cfg.word_dim), torch.tensor([3, 1]))
    with pytest.raises(ValueError, match="FIAN.decode: " + msg):
        model.decode(model(*x), bad)
    with pytest.raises(ValueError, match="collate: " + msg):
        check_batch("collate", *x, durations=bad)


@pytest.mark.parametrize("top_n", [0, -2, 1.5, True])
def test_one_top_n_rule_everywhere(top_n):
    from fian_fast import FIAN
    from model_inputs import tiny

    cand, logits, offsets, lengths, durations = _batch(2)
    with pytest.raises(ValueError, match=f"decode: top_n should be a positive int, got {top_n!r}"):
        decode(cand, logits, offsets, lengths, durations, 0.5, top_n)
    model = FIAN(tiny()).eval()
    cfg = model.cfg
    out = model(torch.randn(1, cfg.num_frames, cfg.video_dim), torch.tensor([4]), torch.randn(1, 2, cfg.word_dim),
                torch.tensor([2]))
    with pytest.raises(ValueError, match=f"FIAN.decode: top_n should be a positive int, got {top_n!r}"):
        model.decode(out, torch.tensor([5.0]), top_n=top_n)
