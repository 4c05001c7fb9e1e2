"""GroundingDataset, collate and load_split: exactly the model's inputs, and load-time checks."""
import numpy as np
import pytest
import torch

from fian_fast.data import GroundingDataset, MemoryFeatures, Record, Vocabulary, collate, load_split
from fian_fast.data.text import GloveText


@pytest.fixture
def vocab(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("the 1 0\ndoor 0 1\nopens 1 1\n. 0 0\n")
    return Vocabulary.build(["the door opens."], GloveText(str(p)))


def test_items_and_collate_match_the_model_contract(vocab):
    feats = MemoryFeatures({"long": np.ones((50, 3), np.float32), "short": np.full((5, 3), 2, np.float32)})
    recs = [Record("long", 25.0, "the door opens .", 5.0, 10.0), Record("short", 2.5, "opens the door the door", 0.5, 2.5)]
    ds = GroundingDataset(recs, feats, vocab, num_frames=8, max_query_length=4)
    b = collate([ds[0], ds[1]])
    assert b.video.shape == (2, 8, 3) and b.video.dtype == torch.float32
    assert b.video_lengths.tolist() == [8, 5] and b.video_lengths.dtype == torch.int64
    assert b.query.shape == (2, 4, 2) and b.query_lengths.tolist() == [4, 4]  # truncated to 4 tokens
    assert torch.allclose(b.gt, torch.tensor([[0.2, 0.4], [0.2, 1.0]]))
    assert b.durations.tolist() == [25.0, 2.5] and b.video_ids == ["long", "short"]
    assert (b.video[1, 5:] == 0).all() and (b.video[1, :5] == 2).all()
    assert b.to("cpu").model_inputs()[0] is b.video


def test_short_query_padding(vocab):
    feats = MemoryFeatures({"v": np.ones((8, 3), np.float32)})
    ds = GroundingDataset([Record("v", 4.0, "the door", 0, 1), Record("v", 4.0, "opens", 1, 2)], feats, vocab, 8, 10)
    b = collate([ds[0], ds[1]])
    assert b.query.shape == (2, 2, 2) and b.query_lengths.tolist() == [2, 1]
    assert (b.query[1, 1] == 0).all()


def test_empty_query_names_the_record(vocab):
    feats = MemoryFeatures({"v": np.ones((8, 3), np.float32)})
    with pytest.raises(ValueError, match=r"query v/7 has no words: ' '"):
        GroundingDataset([Record("v", 4.0, " ", 0, 1, "7")], feats, vocab, 8, 10)


def test_cache_videos(vocab):
    feats = MemoryFeatures({"v": np.ones((8, 3), np.float32)})
    ds = GroundingDataset([Record("v", 4.0, "the door", 0, 1)], feats, vocab, 8, 10, cache_videos=True)
    assert ds.video("v")[0] is ds.video("v")[0]


def test_load_split_synthetic_and_errors():
    ds, rep = load_split("synthetic", "test", 32, 12, video_dim=32, synthetic_sizes=(4, 2, 3))
    assert len(ds) == rep.kept > 0 and ds.vocab.dim == 50
    wide, _ = load_split("synthetic", "test", 16, 12, video_dim=64, synthetic_sizes=(4, 2, 3))
    assert wide[0][0].shape == (16, 64)  # the built-in data follows the config's video_dim
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_split("tacos", "test", 32, 12)
    with pytest.raises(ValueError, match="dataset should be one of"):
        load_split("qvhighlights", "test", 32, 12)
    with pytest.raises(ValueError, match="split should be one of"):
        load_split("synthetic", "dev", 32, 12, synthetic_sizes=(4, 2, 3))
