"""Trainer: checkpoint round trip, atomic writes, resume after a crash mid-epoch, config checks."""
import json
import os

import pytest
import torch

from fian_fast import FIANConfig
from fian_fast.data import load_split, tokenize
from fian_fast.train import TrainOptions, load_checkpoint, load_model, save_checkpoint, train

SIZES = (8, 3, 3)


def tiny_cfg(**kw):
    return FIANConfig.preset("synthetic", hidden_size=16, num_heads=2, ffn_size=32, **kw)


@pytest.fixture(scope="module")
def datasets():
    cfg = tiny_cfg()
    tr, _ = load_split("synthetic", "train", cfg.num_frames, cfg.max_query_length, video_dim=cfg.video_dim,
                       synthetic_sizes=SIZES)
    va, _ = load_split("synthetic", "val", cfg.num_frames, cfg.max_query_length, video_dim=cfg.video_dim,
                       vocab=tr.vocab, synthetic_sizes=SIZES)
    return tr, va


def opts(out, **kw):
    base = dict(out_dir=str(out), epochs=2, batch_size=8, progress=False, checkpoint_every=3, log_every=1)
    base.update(kw)
    return TrainOptions(**base)


def weights(path):
    return load_checkpoint(path)["model"]


def test_checkpoint_round_trip(tmp_path, datasets):
    tr, va = datasets
    summary = train(tiny_cfg(), tr, va, opts(tmp_path, epochs=1))
    state = load_checkpoint(str(tmp_path / "last.pt"))
    assert state["epoch"] == 1 and state["step"] == summary["steps"] == -(-len(tr) // 8)
    assert state["config"] == tiny_cfg().to_dict() and state["vocab"]["words"] == tr.vocab.words
    assert {"optimizer", "rng", "batch_in_epoch", "best"} <= set(state)
    model, cfg, vocab, _ = load_model(str(tmp_path / "best.pt"))
    assert not model.training and cfg.hidden_size == 16 and vocab.words == tr.vocab.words
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["model"][k])
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    events = [json.loads(line)["event"] for line in open(tmp_path / "log.jsonl")]
    assert events[0] == "start" and "step" in events and "eval" in events and events[-1] == "end"


def test_atomic_save_replaces_whole_file(tmp_path):
    path = str(tmp_path / "c.pt")
    save_checkpoint(path, {"a": 1})
    save_checkpoint(path, {"a": 2})
    assert torch.load(path)["a"] == 2 and os.listdir(tmp_path) == ["c.pt"]


def test_resume_after_crash_mid_epoch_matches_uninterrupted(tmp_path, datasets):
    tr, va = datasets
    ref = train(tiny_cfg(), tr, va, opts(tmp_path / "ref"))
    crash_dir = tmp_path / "crash"
    per = -(-len(tr) // 8)
    assert per >= 3

    def boom(step):
        if step == per + 2:  # one step after the checkpoint at batch 1 of the second epoch
            raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected failure"):
        train(tiny_cfg(), tr, va, opts(crash_dir, checkpoint_every=per + 1), on_step=boom)
    state = load_checkpoint(str(crash_dir / "last.pt"))
    assert state["step"] == per + 1 and state["batch_in_epoch"] == 1 and state["epoch"] == 1
    resumed = train(tiny_cfg(), tr, va, opts(crash_dir, resume=True))
    assert resumed["steps"] == ref["steps"] == 2 * per
    a, b = weights(str(tmp_path / "ref" / "last.pt")), weights(str(crash_dir / "last.pt"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(json.loads(line)["event"] == "resume" for line in open(crash_dir / "log.jsonl"))


def test_max_steps_saves_position_and_resume_finishes(tmp_path, datasets):
    tr, va = datasets
    first = train(tiny_cfg(), tr, va, opts(tmp_path, epochs=1, max_steps=1, checkpoint_every=100))
    assert first["steps"] == 1 and load_checkpoint(str(tmp_path / "last.pt"))["batch_in_epoch"] == 1
    done = train(tiny_cfg(), tr, va, opts(tmp_path, epochs=1, resume=True))
    assert done["steps"] == -(-len(tr) // 8) and done["epochs"] == 1


def test_resume_rejects_another_config(tmp_path, datasets):
    tr, va = datasets
    train(tiny_cfg(), tr, va, opts(tmp_path, epochs=1, max_steps=1))
    with pytest.raises(ValueError, match=r"comes from another config: alpha is 0.005 there and 0.5 here"):
        train(tiny_cfg(alpha=0.5), tr, va, opts(tmp_path, resume=True))
    with pytest.raises(ValueError, match="no checkpoint to resume from"):
        train(tiny_cfg(), tr, va, opts(tmp_path / "empty", resume=True))


def test_resume_from_a_checkpoint_older_than_a_config_field(tmp_path, datasets):
    """A config saved before a field existed (here ``localization``) resumes when the run uses
    that field's default, and is refused when it does not."""
    tr, va = datasets
    train(tiny_cfg(), tr, va, opts(tmp_path, epochs=2, max_steps=1))
    last = tmp_path / "last.pt"
    state = torch.load(last, weights_only=False)
    del state["config"]["localization"]
    torch.save(state, last)
    train(tiny_cfg(), tr, va, opts(tmp_path, epochs=2, resume=True))
    with pytest.raises(ValueError, match="localization is 'content' there and 'cmin' here"):
        train(tiny_cfg(localization="cmin", window_sizes=(2, 4)), tr, va, opts(tmp_path, resume=True))


def test_bad_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(str(tmp_path / "junk.pt"))
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="expected keys"):
        load_checkpoint(str(tmp_path / "partial.pt"))


def test_max_steps_inside_an_epoch_validates(tmp_path, datasets):
    tr, va = datasets
    summary = train(tiny_cfg(), tr, va, opts(tmp_path, epochs=1, max_steps=1, checkpoint_every=100))
    assert summary["steps"] == 1 and summary["last"] is not None and "R1@0.5" in summary["last"]
    evals = [e for e in map(json.loads, open(tmp_path / "log.jsonl")) if e["event"] == "eval"]
    assert len(evals) == 1 and evals[0]["step"] == 1
    best = load_checkpoint(str(tmp_path / "best.pt"))
    assert best["step"] == 1 and best["best"]["step"] == 1 and best["best"]["metrics"] == summary["last"]
    assert load_checkpoint(str(tmp_path / "last.pt"))["batch_in_epoch"] == 1


def test_best_holds_weights_config_and_used_words_last_adds_optimizer(tmp_path, datasets):
    tr, va = datasets
    train(tiny_cfg(), tr, va, opts(tmp_path, epochs=1))
    best, last = load_checkpoint(str(tmp_path / "best.pt")), load_checkpoint(str(tmp_path / "last.pt"))
    assert not {"optimizer", "rng", "cuda_rng", "batch_in_epoch"} & set(best)
    assert {"optimizer", "rng", "cuda_rng", "batch_in_epoch"} <= set(last)
    words = {t for r in tr.records + va.records for t in tokenize(r.sentence)}
    assert set(best["vocab"]["words"]) == words and best["vocab"]["vectors"].shape == (len(words), 50)
    params = sum(v.numel() * v.element_size() for v in best["model"].values())
    size_best, size_last = os.path.getsize(tmp_path / "best.pt"), os.path.getsize(tmp_path / "last.pt")
    assert size_best < params + 100_000 and size_last > size_best + 1.9 * params  # Adam: two moments per weight
    model, cfg, vocab, _ = load_model(str(tmp_path / "best.pt"))
    assert vocab.words == tr.vocab.words and cfg == tiny_cfg()


def test_no_validation_split_best_is_the_last_weights(tmp_path, datasets):
    tr, _ = datasets
    train(tiny_cfg(), tr, None, opts(tmp_path, epochs=1))
    best, last = load_checkpoint(str(tmp_path / "best.pt")), load_checkpoint(str(tmp_path / "last.pt"))
    assert "optimizer" not in best and all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


def _resume_with_dropout(tmp_path, datasets, device, perturb_rng=None):
    """Uninterrupted run vs a run stopped by max_steps inside epoch 2 (it validates there), then resumed."""
    tr, va = datasets
    cfg = tiny_cfg(dropout=0.3)
    per = -(-len(tr) // 8)
    kw = dict(device=device, amp=False, checkpoint_every=100)
    train(cfg, tr, va, opts(tmp_path / "ref", **kw))
    train(cfg, tr, va, opts(tmp_path / "cut", max_steps=per + 1, **kw))
    if perturb_rng is not None:
        state = load_checkpoint(str(tmp_path / "cut" / "last.pt"))
        perturb_rng(state)
        save_checkpoint(str(tmp_path / "cut" / "last.pt"), state)
    train(cfg, tr, va, opts(tmp_path / "cut", resume=True, **kw))
    return weights(str(tmp_path / "ref" / "last.pt")), weights(str(tmp_path / "cut" / "last.pt"))


def _other_cpu_rng(state):
    gen = torch.Generator().manual_seed(12345)
    state["rng"] = gen.get_state()


def test_exact_resume_with_dropout_cpu(tmp_path, datasets):
    a, b = _resume_with_dropout(tmp_path, datasets, "cpu")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the random state matters: resuming with another one changes the dropout masks and the weights
    a, b = _resume_with_dropout(tmp_path / "control", datasets, "cpu", perturb_rng=_other_cpu_rng)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def _other_cuda_rng(state):
    assert state["cuda_rng"] is not None and state["cuda_rng"].dtype == torch.uint8
    saved = torch.cuda.get_rng_state()
    torch.cuda.manual_seed(12345)
    state["cuda_rng"] = torch.cuda.get_rng_state()
    torch.cuda.set_rng_state(saved)


@pytest.mark.cuda
def test_exact_resume_with_dropout_cuda(tmp_path, datasets, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)   # restored after the test
    a, b = _resume_with_dropout(tmp_path, datasets, "cuda")
    # GPU reductions may reorder between runs: hold the resumed weights to 1e-5, far below the
    # difference another dropout generator makes (checked next)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
    a, c = _resume_with_dropout(tmp_path / "control", datasets, "cuda", perturb_rng=_other_cuda_rng)
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 1e-3


def test_loss_labels_float64_in_a_float64_model():
    """IoU labels and offset targets in float64: the loss equals one computed from float64 labels
    (float32 labels are off by about 1e-8 relative)."""
    from fian_fast.model.loss import alignment_loss, boundary_loss, clip_candidates, fian_loss
    from fian_fast.reference import iou_label

    g = torch.Generator().manual_seed(0)
    B, N = 3, 40
    cand = torch.sort(torch.rand(N, 2, generator=g, dtype=torch.float64) * 30, dim=-1).values
    lengths = torch.tensor([30, 17, 23])
    gt = torch.tensor([[0.1, 0.7], [1 / 3, 2 / 3], [0.2, 0.9]], dtype=torch.float64)
    logits = torch.randn(B, N, generator=g, dtype=torch.float64)
    offsets = torch.randn(B, N, 2, generator=g, dtype=torch.float64)
    valid = cand[None, :, 0] < lengths[:, None]
    for backend in ("reference", "fast"):
        got = fian_loss(logits, offsets, cand, valid, lengths, gt, 0.3, 0.5, backend)
        iou, pos, targets = iou_label(clip_candidates(cand, lengths), gt * lengths[:, None].double(), 0.3)
        pos = pos & valid
        align, bound = alignment_loss(logits, iou, pos, valid), boundary_loss(offsets, targets, pos)
        assert got.alignment.dtype == torch.float64
        assert abs(got.alignment.item() - align.item()) <= 1e-15 * abs(align.item())
        assert abs(got.boundary.item() - bound.item()) <= 1e-15 * abs(bound.item())
