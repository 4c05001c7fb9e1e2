"""FIAN model (fian_fast.model): shapes, variants, padding, gradients, decoding, training, checks."""
import itertools

import pytest
import torch

from fian_fast import FIAN, FIANConfig, FIANOutput
from fian_fast.config import VARIANTS
from fian_fast.model.cga import CGA, SoftAttention
from fian_fast.model.integration import VideoEnhancedIntegration, fusion_width
from fian_fast.reference.cga import cga as reference_cga
from fian_fast.reference import window_candidates


def tiny(**overrides) -> FIANConfig:
    values = dict(video_dim=16, word_dim=12, num_frames=24, max_query_length=8, hidden_size=32, num_heads=4,
                  ffn_size=64, dropout=0.0, window_sizes=(4, 8, 12), stride_ratio=0.25)
    values.update(overrides)
    return FIANConfig.preset("synthetic", **values)


def inputs(cfg, video_lengths, query_lengths, lq=None, dtype=torch.float32):
    B = len(video_lengths)
    lq = lq or max(query_lengths)
    video = torch.randn(B, cfg.num_frames, cfg.video_dim, dtype=dtype)
    query = torch.randn(B, lq, cfg.word_dim, dtype=dtype)
    return video, torch.tensor(video_lengths), query, torch.tensor(query_lengths)


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
    video, vl, query, ql = inputs(cfg, [17], [5], lq=5)
    alone = model(video, vl, query, ql)
    # same sample, other padding content, padded to max_query_length, batched with others
    big_v, big_vl, big_q, big_ql = inputs(cfg, [24, 17, 3], [8, 5, 1], lq=8)
    big_v[1, :17], big_q[1, :5] = video[0, :17], query[0]
    big_v[1, 17:] = 1e3
    big_q[1, 5:] = float("nan")
    batched = model(big_v, big_vl, big_q, big_ql)
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


# ----------------------------------------------------------------------------------- components
def test_cga_module_is_the_reference_function():
    torch.manual_seed(1)
    for gate in ("shared", "separate"):
        block = CGA(16, 4, gate)
        q, v = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
        ql, vl = torch.tensor([5, 2]), torch.tensor([7, 3])
        want = reference_cga(q, v, ql, vl, block.w_q, block.w_k, block.w_v, block.w_o, block.w_gate_q,
                                 block.w_gate_v, block.b_gate, block.b_info, 4, block.w_info_q, block.w_info_v)
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


def test_fast_backend_matches_reference_on_cpu():
    cfg = tiny()
    ref = FIAN(cfg).eval()
    fast = FIAN(cfg, backend="fast").eval()
    fast.load_state_dict(ref.state_dict())
    x = inputs(cfg, [24, 13], [8, 3])
    a, b = ref(*x), fast(*x)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.offsets, a.offsets, atol=1e-5, rtol=1e-5)
    gt = torch.tensor([[0.1, 0.4], [0.2, 0.7]])
    for la, lb in zip(ref.loss(a, gt), fast.loss(b, gt)):
        torch.testing.assert_close(lb, la, atol=1e-5, rtol=1e-5)
    durations = torch.tensor([30.0, 12.0])
    pa, pb = ref.decode(a, durations), fast.decode(b, durations)
    assert torch.equal(pa.indices, pb.indices)
    torch.testing.assert_close(pb.segments, pa.segments, atol=1e-4, rtol=1e-5)
