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


# ------------------------------------------------------------------ load_split on public files
@pytest.fixture(scope="module")
def public(tmp_path_factory):
    from fian_fast.data import make_synthetic, write_synthetic

    root = tmp_path_factory.mktemp("pub")
    data = make_synthetic(seed=2, num_videos=(6, 3, 3), video_dim=8)
    return data, write_synthetic(data, str(root))


def test_video_dim_follows_the_features(public):
    _, paths = public
    ds, _ = load_split("tacos", "val", 16, 12, data_dir=paths["tacos"], features=paths["features_h5"])
    assert ds.video_dim == 8 and ds.features_path == paths["features_h5"] and ds[0][0].shape == (16, 8)
    with pytest.raises(ValueError, match="feature dim 8, config expects 500"):
        load_split("tacos", "val", 16, 12, video_dim=500, data_dir=paths["tacos"], features=paths["features_h5"])


def test_limit_keeps_the_first_queries(public):
    _, paths = public
    full, _ = load_split("activitynet", "train", 16, 12, data_dir=paths["activitynet"], features=paths["features_npy"])
    ds, rep = load_split("activitynet", "train", 16, 12, data_dir=paths["activitynet"],
                         features=paths["features_npy"], limit=5)
    assert [r.query_id for r in ds.records] == [r.query_id for r in full.records[:5]]
    assert rep.kept == 5 and rep.counts["limited"] == len(full) - 5
    assert f"limit: {len(full) - 5} more queries left out" in rep.summary()
    with pytest.raises(ValueError, match="load_split: limit should be >= 1 query, got 0"):
        load_split("activitynet", "train", 16, 12, data_dir=paths["activitynet"], features=paths["features_npy"],
                   limit=0)


def test_skip_missing_features_counts_the_drop(public, tmp_path):
    data, paths = public
    import h5py
    vids = sorted({r.video_id for r in data.splits["test"]})
    with h5py.File(tmp_path / "part.h5", "w") as f:
        for v in vids[1:]:
            f.create_dataset(v, data=data.features[v])
    with pytest.raises(ValueError, match=rf"1 of {len(vids)} annotation ids missing \(first: '{vids[0]}'\)"):
        load_split("tacos", "test", 16, 12, data_dir=paths["tacos"], features=str(tmp_path / "part.h5"))
    ds, rep = load_split("tacos", "test", 16, 12, data_dir=paths["tacos"], features=str(tmp_path / "part.h5"),
                         skip_missing_features=True)
    lost = sum(r.video_id == vids[0] for r in data.splits["test"])
    assert rep.counts["missing_features"] == lost and len(ds) == rep.total - lost
    assert vids[0] not in {r.video_id for r in ds.records}
    assert f"missing_features: {lost} (e.g. {vids[0]}/" in rep.summary()


def test_truncation_and_wordless_queries_counted(tmp_path):
    import json
    (tmp_path / "test.json").write_text(json.dumps({"s1.avi": {
        "timestamps": [[0, 30], [30, 60], [60, 90], [0, 90]], "fps": 30, "num_frames": 300,
        "sentences": ["one two three four five six", "...", "the door", "  "]}}))
    np.save(tmp_path / "s1.avi.npy", np.ones((7, 4), np.float32))
    ds, rep = load_split("tacos", "test", 8, 4, data_dir=str(tmp_path), features=str(tmp_path),
                         glove=_glove(tmp_path))
    assert [r.sentence for r in ds.records] == ["one two three four five six", "the door"]
    assert ds.truncated == [0] and ds[0][2].shape[0] == 4
    assert rep.counts == {"truncated_query": 1, "no_words": 1, "empty_sentence": 1}
    assert "truncated 1 queries longer than 4 tokens to their first 4 (e.g. s1.avi/0)" in rep.summary()


def _glove(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("the 1 0\ndoor 0 1\none 1 1\n")
    return str(p)


def test_nan_video_fails_naming_file_and_video(tmp_path):
    import json
    (tmp_path / "test.json").write_text(json.dumps({"s1.avi": {"timestamps": [[0, 30]], "fps": 30,
                                                               "num_frames": 300, "sentences": ["the door"]}}))
    np.save(tmp_path / "s1.avi.npy", np.full((7, 4), np.nan, np.float32))
    ds, _ = load_split("tacos", "test", 8, 4, data_dir=str(tmp_path), features=str(tmp_path), glove=_glove(tmp_path))
    with pytest.raises(ValueError, match=r"features .*: video 's1.avi' has 28 non-finite values of 28 \(28 NaN"):
        ds[0]


def _several_windows(tmp_path):
    import json
    lines = [{"qid": 10, "query": "the door", "duration": 40, "vid": "a", "relevant_windows": [[0, 8], [20, 30], [34, 40]]},
             {"qid": 11, "query": "the door one", "duration": 40, "vid": "b", "relevant_windows": [[10, 20]]},
             {"qid": 12, "query": "one door", "duration": 40, "vid": "b", "relevant_windows": [[2, 6], [26, 38]]}]
    for split in ("train", "val"):
        (tmp_path / f"highlight_{split}_release.jsonl").write_text("".join(json.dumps(o) + "\n" for o in lines))
    rng = np.random.default_rng(0)
    for v in "ab":
        np.save(tmp_path / f"{v}.npy", rng.standard_normal((20, 8)).astype(np.float32))
    return lines


def test_several_windows_policies_in_load_split(tmp_path):
    _several_windows(tmp_path)
    args = dict(data_dir=str(tmp_path), features=str(tmp_path), glove=_glove(tmp_path))
    tr, rep = load_split("lighthouse", "train", 16, 8, windows="each", **args)
    assert [r.query_id for r in tr.records] == ["10#0", "10#1", "10#2", "11", "12#0", "12#1"]
    assert rep.kept == 6 and rep.counts["several_windows"] == 2 and rep.counts["extra_windows"] == 3
    va, rep = load_split("lighthouse", "val", 16, 8, windows="each", **args)
    assert len(va) == 3 and len(va.records[0].windows) == 3 and rep.windows == "best"
    first, rep = load_split("lighthouse", "train", 16, 8, **args)
    assert len(first) == 3 and all(r.windows == () for r in first.records) and rep.windows == "first"


def test_best_window_evaluation_is_the_best_of_each_window(tmp_path):
    """A query with several windows counts a hit when any window is hit, and its best window's IoU."""
    from fian_fast import FIAN, FIANConfig
    from fian_fast.evaluate import evaluate_model
    from model_inputs import each_window_alone
    from torch.utils.data import DataLoader

    _several_windows(tmp_path)
    va, _ = load_split("lighthouse", "val", 16, 8, windows="each", data_dir=str(tmp_path), features=str(tmp_path),
                       glove=_glove(tmp_path))
    torch.manual_seed(3)
    cfg = FIANConfig.preset("synthetic", video_dim=8, word_dim=2, num_frames=16, hidden_size=16, num_heads=2,
                            ffn_size=32)
    model = FIAN(cfg).eval()
    thresholds = (0.1, 0.3, 0.5)
    for protocol in ("2dtan", "csmgan", "mmn"):
        # batches of one: the model sees exactly what it sees in the one-query evaluations below
        got = evaluate_model(model, DataLoader(va, batch_size=1, collate_fn=collate), (protocol,), thresholds,
                             windows="each")[protocol]
        want_hits, want_miou = each_window_alone(model, va, protocol, thresholds, got.hits)
        assert got.num_queries == 3 and got.hits == want_hits
        assert got.miou_sum == pytest.approx(want_miou, abs=1e-12)
        first = evaluate_model(model, DataLoader(va, batch_size=1, collate_fn=collate), (protocol,), thresholds)[protocol]
        assert all(got.hits[k] >= first.hits[k] for k in got.hits) and got.miou_sum >= first.miou_sum
        assert any(got.hits[k] > first.hits[k] for k in got.hits)  # the extra windows are actually matched
    # moment_detr grades every window itself, from the batches' gt_windows
    loader = DataLoader(va, batch_size=2, collate_fn=collate)
    assert [w is None for w in next(iter(loader)).gt_windows] == [False, True]
    got = evaluate_model(model, loader, ("moment_detr",), thresholds, windows="each")["moment_detr"]
    assert got.hits == evaluate_model(model, loader, ("moment_detr",), thresholds)["moment_detr"].hits
