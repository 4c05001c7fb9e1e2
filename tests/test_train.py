"""Trainer: checkpoint round trip, atomic writes, resume after a crash mid-epoch, config checks."""
import json
import os

import pytest
import torch

from fian_fast import FIANConfig
from fian_fast.data import load_split
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


def test_bad_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(str(tmp_path / "junk.pt"))
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="expected keys"):
        load_checkpoint(str(tmp_path / "partial.pt"))
