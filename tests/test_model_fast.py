"""FIAN with backend="fast": dispatch to fian_fast.ops and agreement with the reference."""
import os
import subprocess
import sys

import pytest
import torch

from fian_fast import FIAN, FIANConfig
from fian_fast.reference.cga import cga as reference_cga


def tiny(**overrides) -> FIANConfig:
    values = dict(video_dim=16, word_dim=12, num_frames=24, max_query_length=8, hidden_size=32, num_heads=4,
                  ffn_size=64, dropout=0.0, window_sizes=(4, 8, 12), stride_ratio=0.25)
    values.update(overrides)
    return FIANConfig.preset("synthetic", **values)


def inputs(cfg, video_lengths, query_lengths, lq=None):
    B = len(video_lengths)
    video = torch.randn(B, cfg.num_frames, cfg.video_dim)
    query = torch.randn(B, lq or max(query_lengths), cfg.word_dim)
    return video, torch.tensor(video_lengths), query, torch.tensor(query_lengths)


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


def test_fast_backend_calls_the_fused_ops(monkeypatch):
    """backend="fast" routes window_score / iou_label / decode / cga / relu_dropout through fian_fast.ops when
    they can run; spies stand in for the ops and forward to the references."""
    import fian_fast.model.cga as cga_module
    import fian_fast.model.decode as decode_module
    import fian_fast.model.iterative_attention as iterative_attention_module
    import fian_fast.model.localization as localization_module
    import fian_fast.model.loss as loss_module
    from fian_fast import reference

    calls = []

    def spy(name, fn):
        def wrapped(*args, validate=True):
            calls.append((name, validate))
            return fn(*args)
        return wrapped

    fakes = {"window_score": spy("window_score", reference.window_score),
             "iou_label": spy("iou_label", reference.iou_label),
             "decode": spy("decode", reference.decode),
             "cga": spy("cga", reference_cga),
             "relu_dropout": spy("relu_dropout", reference.relu_dropout)}
    for module in (cga_module, decode_module, localization_module, loss_module, iterative_attention_module):
        monkeypatch.setattr(module, "fast_op", lambda name, device: fakes[name])
    cfg = tiny()
    x = inputs(cfg, [24, 13], [8, 3])
    model = FIAN(cfg, backend="fast").eval()
    out = model(*x)
    model.loss(out, torch.tensor([[0.1, 0.4], [0.2, 0.7]]))
    model.decode(out, torch.tensor([3.0, 4.0]))
    names = [name for name, _ in calls]
    assert names.count("cga") == 4 and names.count("relu_dropout") == 4
    assert {"window_score", "iou_label", "decode"} <= set(names)
    # the model checked its inputs once: no op it calls checks values again (relu_dropout reads
    # no values, only its arguments' types)
    assert all(not validate for name, validate in calls if name not in ("window_score", "relu_dropout")), calls
    calls.clear()
    reference_model = FIAN(cfg).eval()
    out = reference_model(*x)
    reference_model.loss(out, torch.tensor([[0.1, 0.4], [0.2, 0.7]]))
    reference_model.decode(out, torch.tensor([3.0, 4.0]))
    assert calls == []


def test_fast_op_lookup_respects_the_device(monkeypatch):
    """The model always gets ops.cga (it needs no extension); the op runs its ATen path on the
    CPU by default (the one rule, fian_fast._cga.cga_path)."""
    from fian_fast import _cga, ops
    from fian_fast.model._dispatch import fast_op
    assert fast_op("cga", torch.device("cpu")) is ops.cga
    monkeypatch.setattr(_cga, "MODE", "auto")
    assert _cga.cga_path("cpu", torch.float32, 8) == "aten"


def test_model_with_the_triton_cga_under_the_interpreter(monkeypatch):
    """The fused Triton CGA (FIAN_FAST_CGA=triton: interpreted on the CPU) inside the model
    matches the reference, forward and every parameter's gradient."""
    pytest.importorskip("triton")
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("runs the Triton interpreter on the CPU")
    import importlib

    from fian_fast import _cga

    ops_cga = importlib.import_module("fian_fast.ops.cga")
    calls = []
    fused = ops_cga._cga_fused
    monkeypatch.setattr(ops_cga, "_cga_fused", lambda *a: calls.append(a[-1]) or fused(*a))
    monkeypatch.setattr(_cga, "MODE", "triton")
    monkeypatch.setattr(_cga, "_INTERPRET", True)
    cfg = tiny(hidden_size=32, num_heads=2, num_frames=16, max_query_length=4, window_sizes=(4, 8))
    ref = FIAN(cfg).eval()
    fast = FIAN(cfg, backend="fast").eval()
    fast.load_state_dict(ref.state_dict())
    x = inputs(cfg, [16, 7], [4, 2])
    gt = torch.tensor([[0.1, 0.5], [0.2, 0.9]])
    want = ref(*x)
    ref.loss(want, gt).total.backward()
    assert calls == []
    got = fast(*x)
    fast.loss(got, gt).total.backward()
    assert calls == ["ieee"] * 4  # torch's default float32 matmul precision, in the 4 CGA blocks
    torch.testing.assert_close(got.logits, want.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.offsets, want.offsets, atol=1e-4, rtol=1e-4)
    for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)


_COMPILED_STEP_FIRST = r'''
import sys, torch
from fian_fast import FIAN, FIANConfig

cfg = FIANConfig.preset("synthetic", video_dim=16, word_dim=12, num_frames=8, max_query_length=4, hidden_size=32,
                        num_heads=2, ffn_size=64, dropout=0.0, window_sizes=(2, 4), stride_ratio=0.5)
torch.manual_seed(0)
ref, fast = FIAN(cfg), FIAN(cfg, backend="fast")
fast.load_state_dict(ref.state_dict())
x = (torch.randn(2, 8, 16), torch.tensor([8, 5]), torch.randn(2, 4, 12), torch.tensor([4, 2]))
gt = torch.tensor([[0.1, 0.5], [0.2, 0.9]])

def step(model):
    return model.loss(model(*x), gt, validate=False).total

got = torch.compile(step, fullgraph=True)(fast)
got.backward()
assert "fian_fast.kernels.cga" in sys.modules, "the compiled step did not run the Triton CGA"
want = step(ref)
want.backward()
torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
    torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)
print("ok")
'''


@pytest.mark.slow
def test_compiled_step_first_in_a_fresh_process():
    """``train --compile``'s first step: forward + loss compiled whole (fullgraph, inductor) in a
    fresh process, its CGA blocks on the Triton path (FIAN_FAST_CGA=triton, interpreted on the
    CPU), is the first CGA call of the process; loss and every gradient match the reference
    model. About a minute on one CPU thread (the GRUs unroll)."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k not in ("FIAN_FAST_CGA", "TRITON_INTERPRET")}
    env.update(FIAN_FAST_CGA="triton", TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _COMPILED_STEP_FIRST], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0 and proc.stdout.split()[-1:] == ["ok"], proc.stderr[-4000:]


# ------------------------------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("variant", ["full", "soft", "vq"])
def test_fast_backend_matches_reference_on_cuda(variant):
    cfg = FIANConfig.preset("tacos", variant=variant, dropout=0.0)
    ref = FIAN(cfg).cuda()
    fast = FIAN(cfg, backend="fast").cuda()
    fast.load_state_dict(ref.state_dict())
    x = [t.cuda() for t in inputs(cfg, [200, 130, 57, 9], [30, 12, 5, 1], lq=30)]
    gt = torch.tensor([[0.1, 0.4], [0.2, 0.7], [0.5, 0.55], [0.0, 1.0]], device="cuda")
    outs, grads = [], []
    for model in (ref, fast):
        out = model(*x)
        model.loss(out, gt).total.backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(outs[1].logits, outs[0].logits, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(outs[1].offsets, outs[0].offsets, atol=2e-3, rtol=2e-3)
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=2e-3, rtol=2e-2, msg=name)
