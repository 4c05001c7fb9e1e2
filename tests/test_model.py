"""FIAN model (fian_fast.model): shapes, variants, padding, gradients, decoding, training, checks."""
import itertools

import pytest
import torch

from fian_fast import FIAN, FIANConfig, FIANOutput, Prediction
from fian_fast.config import VARIANTS
from fian_fast.model.cga import CGA, SoftAttention
from fian_fast.model.integration import VideoEnhancedIntegration, fusion_width
from fian_fast.reference.cga import CGAWeights
from fian_fast.reference.cga import cga as reference_cga
from fian_fast.reference import window_candidates
from model_inputs import alone_and_batched, inputs, tiny


def forward_backward(model, cfg, video_lengths=(24, 11, 5), query_lengths=(8, 3, 1)):
    out = model(*inputs(cfg, video_lengths, query_lengths))
    gt = torch.tensor([[0.1, 0.5], [0.3, 0.9], [0.0, 1.0]])[: len(video_lengths)]
    loss = model.loss(out, gt)
    loss.total.backward()
    return out, loss


def assert_finite_grads(model):
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "a parameter got no gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


# ----------------------------------------------------------------------------- shapes & variants
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_forward_backward(variant):
    cfg = tiny(variant=variant)
    model = FIAN(cfg)
    out, loss = forward_backward(model, cfg)
    N = cfg.num_candidates
    assert isinstance(out, FIANOutput) and out.valid.dtype == torch.bool
    assert out.logits.shape == (3, N) and out.offsets.shape == (3, N, 2) and out.candidates.shape == (N, 2)
    assert model.localization.gru.gru.input_size == fusion_width(variant, cfg.hidden_size)
    assert torch.isfinite(loss.total)
    assert_finite_grads(model)


def test_variant_widths():
    assert [fusion_width(v, 8) for v in VARIANTS] == [16, 8, 8, 8, 8, 8, 16, 32]


def test_separate_gate_has_its_own_projections():
    cfg = tiny(gate="separate")
    model = FIAN(cfg)
    names = {n for n, _ in model.named_parameters()}
    assert "iterative_attention.q1_encoder.attention.w_info_q" in names
    assert "iterative_attention.q1_encoder.attention.w_info_v" in names
    assert not any("w_info" in n for n, _ in FIAN(tiny()).named_parameters())
    forward_backward(model, cfg)
    assert_finite_grads(model)


@pytest.mark.parametrize("overrides", [dict(fixed_stride=1), dict(stride_ratio=0.125), dict(stride_ratio=0.25),
                                       dict(stride_ratio=0.5)], ids=["stride1", "r0.125", "r0.25", "r0.5"])
def test_table6_strides(overrides):
    cfg = tiny(window_sizes=(8, 16), **overrides)
    model = FIAN(cfg)
    out, _ = forward_backward(model, cfg)
    assert out.logits.shape[1] == cfg.num_candidates
    assert torch.equal(out.candidates, window_candidates(cfg.num_frames, [8, 16], list(cfg.strides)))
    assert_finite_grads(model)


@pytest.mark.parametrize("name", ["charades", "tacos", "activitynet"])
def test_full_size_presets(name):
    cfg = FIANConfig.preset(name)
    model = FIAN(cfg)
    out = model(*inputs(cfg, [cfg.num_frames - 3], [3], lq=4))
    assert out.logits.shape == (1, cfg.num_candidates)
    model.loss(out, torch.tensor([[0.2, 0.6]])).total.backward()
    assert_finite_grads(model)


def test_synthetic_preset():
    cfg = FIANConfig.preset("synthetic")
    model = FIAN(cfg)
    forward_backward(model, cfg, (32, 20, 9), (12, 5, 2))
    assert_finite_grads(model)


def test_valid_and_candidates():
    cfg = tiny()
    model = FIAN(cfg)
    out = model(*inputs(cfg, [24, 10, 1], [2, 2, 2]))
    assert torch.equal(out.candidates, window_candidates(24, list(cfg.window_sizes), list(cfg.strides)))
    assert torch.equal(out.valid, out.candidates[None, :, 0] < torch.tensor([24, 10, 1])[:, None])
    assert out.valid[2].sum() == len(cfg.window_sizes)                 # one window per scale starts at 0


# --------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("variant", ["full", "soft", "cma", "vqma", "qvma", "matrix"])
def test_padding_invariance(variant):
    cfg = tiny(variant=variant, dropout=0.3)
    model = FIAN(cfg).eval()
    # same sample, other padding content, padded to max_query_length, batched with others
    alone, batched = alone_and_batched(model, cfg)
    torch.testing.assert_close(batched.logits[1], alone.logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.offsets[1], alone.offsets[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["full", "soft", "vqma"])
def test_padded_inputs_get_zero_gradient(variant):
    cfg = tiny(variant=variant, dropout=0.2)
    model = FIAN(cfg).train()
    video, vl, query, ql = inputs(cfg, [24, 9, 2], [8, 3, 1])
    video.requires_grad_(True)
    query.requires_grad_(True)
    out = model(video, vl, query, ql)
    w = torch.randn_like(out.logits)
    ((out.logits * w).sum() + out.offsets.sum()).backward()
    for x, lengths in ((video, vl), (query, ql)):
        pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        assert torch.equal(x.grad[pad], torch.zeros_like(x.grad[pad]))
        assert (x.grad[~pad].abs().sum(-1) > 0).all()


def test_float64_gradcheck_through_the_model():
    cfg = tiny(video_dim=3, word_dim=3, num_frames=8, max_query_length=3, hidden_size=8, num_heads=2, ffn_size=8,
               window_sizes=(2, 4), stride_ratio=0.5)
    model = FIAN(cfg).double().eval()
    video, vl, query, ql = inputs(cfg, [8, 5], [3, 2], dtype=torch.float64)
    video.requires_grad_(True)
    query.requires_grad_(True)

    def fn(v, q):
        out = model(v, vl, q, ql)
        return out.logits, out.offsets

    assert torch.autograd.gradcheck(fn, (video, query), eps=1e-6, atol=1e-5, fast_mode=True)


# ----------------------------------------------------------------------------------- components
def test_cga_module_is_the_reference_function():
    torch.manual_seed(1)
    for gate in ("shared", "separate"):
        block = CGA(16, 4, gate)
        q, v = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
        ql, vl = torch.tensor([5, 2]), torch.tensor([7, 3])
        weights = CGAWeights(block.w_q, block.w_k, block.w_v, block.w_o, block.w_gate_q, block.w_gate_v,
                             block.b_gate, block.b_info, block.w_info_q, block.w_info_v)
        want = reference_cga(q, v, ql, vl, weights, 4)
        assert torch.equal(block(q, v, ql, vl), want)


def test_soft_attention_by_hand():
    q = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    v = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [5.0, 5.0]]])
    out = SoftAttention()(q, v, torch.tensor([1]), torch.tensor([2]))
    s = torch.tensor([1.0, 2.0]) / 2 ** 0.5                 # q0 . v0, q0 . v1; v2 is padding
    p = torch.softmax(s, 0)
    torch.testing.assert_close(out[0, 0], p[0] * v[0, 0] + p[1] * v[0, 1])
    assert torch.equal(out[0, 1], torch.zeros(2))          # padded query row


def test_integration_by_hand():
    torch.manual_seed(2)
    integ = VideoEnhancedIntegration(2, 4, max_query_length=3, num_frames=5)
    v1, v2 = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    q1, q2 = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    ql, vl = torch.tensor([2]), torch.tensor([5])
    m = integ([v1, v2], [q1, q2], ql, vl)
    q1[:, 2:], q2[:, 2:] = 0, 0                            # padded word
    hats = [p.weight @ q[0] + p.bias[:, None] for p, q in zip(integ.length_proj, (q1, q2))]   # eq. 11
    q_hat, v_hat = torch.cat(hats, -1), torch.cat([v1[0], v2[0]], -1)                         # eq. 12
    r = torch.sigmoid(q_hat @ integ.filter.weight.T + integ.filter.bias)                     # eq. 13
    want = torch.nn.functional.layer_norm(v_hat + r * q_hat, (8,), integ.norm.weight, integ.norm.bias)
    torch.testing.assert_close(m[0], want, atol=1e-6, rtol=1e-5)


def test_dropout_only_in_training():
    cfg = tiny(dropout=0.5)
    model = FIAN(cfg)
    x = inputs(cfg, [24, 7], [4, 2])
    model.eval()
    assert torch.equal(model(*x).logits, model(*x).logits)
    model.train()
    assert not torch.equal(model(*x).logits, model(*x).logits)



# -------------------------------------------------------------------------------------- decoding
def _iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("nms", [0.3, 0.5, 0.9])
def test_predictions_sorted_inside_and_suppressed(nms):
    cfg = tiny(window_sizes=(4, 6, 8, 12), fixed_stride=1)
    model = FIAN(cfg).eval()
    durations = torch.tensor([30.0, 7.5, 100.0])
    x = inputs(cfg, [24, 10, 3], [8, 4, 2])
    pred = model.predict(*x, durations, top_n=6, nms_threshold=nms)
    assert isinstance(pred, Prediction) and pred.indices.dtype == torch.int64
    assert pred.segments.shape == (3, 6, 2) and pred.scores.shape == (3, 6) and pred.indices.shape == (3, 6)
    for b in range(3):
        kept = pred.indices[b] >= 0
        assert kept[0] and torch.equal(kept, kept.sort(descending=True).values)    # padding only at the end
        scores, segs = pred.scores[b][kept], pred.segments[b][kept]
        assert torch.all(scores[:-1] >= scores[1:])
        assert torch.all(segs >= 0) and torch.all(segs <= durations[b] + 1e-5) and torch.all(segs[:, 0] <= segs[:, 1])
        assert torch.equal(pred.scores[b][~kept], torch.zeros(int((~kept).sum())))
        for i, j in itertools.combinations(range(len(segs)), 2):
            assert _iou(segs[i].tolist(), segs[j].tolist()) <= nms + 1e-6
    assert (pred.indices[2] >= 0).sum() <= cfg.num_candidates


def test_decoded_segment_is_clipped_window_plus_offsets():
    cfg = tiny()
    model = FIAN(cfg).eval()
    x = inputs(cfg, [24, 10], [8, 4])
    out = model(*x)
    durations = torch.tensor([48.0, 5.0])
    pred = model.decode(out, durations, top_n=3, nms_threshold=1.0)
    with torch.no_grad():
        for b in range(2):
            L = float(x[1][b])
            order = torch.argsort(out.logits[b].masked_fill(~out.valid[b], -1e9), descending=True, stable=True)[:3]
            assert torch.equal(pred.indices[b], order)
            j = int(order[0])
            s, e = out.candidates[j].tolist()
            s, e = min(s, L) + out.offsets[b, j, 0].item(), min(e, L) + out.offsets[b, j, 1].item()
            s, e = sorted((s, e))
            want = torch.tensor([min(max(s, 0), L), min(max(e, 0), L)]) / L * durations[b]
            torch.testing.assert_close(pred.segments[b, 0], want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pred.scores[b, 0], torch.sigmoid(out.logits[b, j]))


def test_predict_defaults_come_from_the_config():
    cfg = tiny(top_n=4, nms_threshold=0.4)
    model = FIAN(cfg).eval()
    x = inputs(cfg, [24], [5])
    pred = model.predict(*x, torch.tensor([10.0]))
    again = model.decode(model(*x), torch.tensor([10.0]), top_n=4, nms_threshold=0.4)
    assert pred.indices.shape == (1, 4) and torch.equal(pred.indices, again.indices)


# -------------------------------------------------------------------------------------- training
def test_adam_steps_reduce_the_loss():
    torch.manual_seed(3)
    cfg = tiny(dropout=0.0)
    model = FIAN(cfg).train()
    x = inputs(cfg, [24, 18, 9, 24], [8, 5, 3, 2])
    gt = torch.tensor([[0.1, 0.4], [0.5, 0.9], [0.0, 0.6], [0.7, 1.0]])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = model.loss(model(*x), gt).total
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ------------------------------------------------------------------------------------ bad inputs
def _bad_cases(cfg):
    v, vl, q, ql = inputs(cfg, [24, 10], [5, 2])
    nan_v = v.clone()
    nan_v[1, 3, 0] = float("nan")
    inf_q = q.clone()
    inf_q[0, 4, 1] = float("inf")
    return {
        "video-rank": ((v[0], vl, q, ql), "video should be a 3-D tensor"),
        "video-dim": ((v[..., :5], vl, q, ql), "video should have size 16 at dim 2"),
        "video-frames": ((v[:, :20], vl, q, ql), "video should have size 24 at dim 1"),
        "video-int": ((v.long(), vl, q, ql), "video should be a floating tensor"),
        "query-dim": ((v, vl, q[..., :3], ql), "query should have size 12 at dim 2"),
        "query-batch": ((v, vl, q[:1], ql), "query should have size 2 at dim 0"),
        "query-too-long": ((v, vl, torch.randn(2, 9, 12), ql), "query should have 1 to max_query_length=8"),
        "vlen-zero": ((v, torch.tensor([24, 0]), q, ql), r"video_lengths should lie in \[1, 24\]"),
        "vlen-big": ((v, torch.tensor([25, 3]), q, ql), r"video_lengths should lie in \[1, 24\]"),
        "vlen-float": ((v, vl.float(), q, ql), "video_lengths should be an integer tensor"),
        "vlen-batch": ((v, vl[:1], q, ql), "video_lengths should have size 2"),
        "qlen-big": ((v, vl, q, torch.tensor([6, 1])), r"query_lengths should lie in \[1, 5\]"),
        "video-nan": ((nan_v, vl, q, ql), "video should be finite"),
        "query-inf": ((v, vl, inf_q, ql), "query should be finite"),
    }


@pytest.mark.parametrize("case", list(_bad_cases(tiny())))
def test_bad_inputs_raise(case):
    cfg = tiny()
    args, match = _bad_cases(cfg)[case]
    model = FIAN(cfg)
    with pytest.raises(ValueError, match="FIAN.forward: " + match):
        model(*args)
    with pytest.raises(ValueError, match="FIAN.predict: " + match):
        model.predict(*args, torch.ones(2))


@pytest.mark.parametrize("kwargs, match", [
    (dict(durations=torch.tensor([10.0, 0.0])), "durations should be finite and > 0"),
    (dict(durations=torch.tensor([10.0, float("nan")])), "durations should be finite and > 0"),
    (dict(durations=torch.tensor([10.0])), "durations should have size 2"),
    (dict(durations=torch.tensor([10, 5])), "durations should be a floating tensor"),
    (dict(durations=torch.tensor([10.0, 5.0]), top_n=0), "top_n should be a positive int"),
    (dict(durations=torch.tensor([10.0, 5.0]), nms_threshold=1.5), r"nms_threshold should be in \[0, 1\]"),
])
def test_bad_decode_arguments(kwargs, match):
    cfg = tiny()
    model = FIAN(cfg).eval()
    x = inputs(cfg, [24, 10], [5, 2])
    with pytest.raises(ValueError, match="FIAN.decode: " + match):
        model.decode(model(*x), **kwargs)
    with pytest.raises(ValueError, match="FIAN.predict: " + match):
        model.predict(*x, **kwargs)


def test_padding_may_hold_nan_and_bad_constructor_args():
    cfg = tiny()
    model = FIAN(cfg).eval()
    v, vl, q, ql = inputs(cfg, [20, 10], [5, 2])
    v[1, 10:] = float("nan")
    q[1, 2:] = float("inf")
    assert torch.isfinite(model(v, vl, q, ql).logits).all()
    with pytest.raises(ValueError, match="backend should be one of"):
        FIAN(cfg, backend="triton")
    with pytest.raises(ValueError, match="cfg should be a FIANConfig"):
        FIAN(cfg.to_dict())
    with pytest.raises(ValueError, match="out should be a FIANOutput"):
        model.loss(tuple(model(v, vl, q, ql)), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="FIAN.forward: video should hold at least one sample"):
        model(v[:0], vl[:0], q[:0], ql[:0])


def test_bfloat16_autocast_on_cpu():
    cfg = tiny()
    model = FIAN(cfg)
    x = inputs(cfg, [24, 9], [8, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*x)
        loss = model.loss(out, torch.tensor([[0.1, 0.5], [0.2, 0.3]]))
    assert loss.total.dtype == torch.float32 and torch.isfinite(loss.total)
    loss.total.backward()
    assert_finite_grads(model)
