"""The built-in synthetic dataset: deterministic, every query grounded on its planted event."""
import os

import numpy as np
import pytest

from fian_fast.data import make_synthetic, write_synthetic
from fian_fast.data.synthetic import CLIP_SECONDS, EVENTS


@pytest.fixture(scope="module")
def data():
    return make_synthetic(seed=1, num_videos=(40, 10, 10), video_dim=16)


def test_deterministic(data):
    again = make_synthetic(seed=1, num_videos=(40, 10, 10), video_dim=16)
    assert again.splits == data.splits
    for k in data.features:
        np.testing.assert_array_equal(again.features[k], data.features[k])
    other = make_synthetic(seed=2, num_videos=(40, 10, 10), video_dim=16)
    assert other.splits["train"] != data.splits["train"]


def test_queries_name_their_event_and_span_carries_its_pattern(data):
    # The planted pattern dominates the clips of the ground-truth span: the span's mean feature
    # correlates best with the pattern of the event the sentence names.
    rng = np.random.default_rng(10_000 + data.seed)
    patterns = rng.standard_normal((len(EVENTS), data.video_dim))
    hits = total = 0
    for r in data.splits["train"]:
        k = next(i for i, (phrase, _) in enumerate(EVENTS) if f"the person {phrase}" in r.sentence)
        a, b = int(round(r.start / CLIP_SECONDS)), int(round(r.end / CLIP_SECONDS))
        span = data.features[r.video_id][a:b].mean(0)
        corr = patterns @ span / np.linalg.norm(patterns, axis=1)
        hits += int(np.argmax(corr) == k)
        total += 1
    assert hits / total > 0.95


def test_query_kinds_and_bounds(data):
    recs = [r for s in data.splits.values() for r in s]
    assert all(0 <= r.start < r.end <= r.duration for r in recs)
    assert all(r.video_id in data.features for r in recs)
    assert data.info["repeated"] > 0 and data.info["context"] > 0 and data.info["plain"] > 0
    lengths = {data.features[v].shape[0] for v in data.features}
    assert min(lengths) < 32 < max(lengths)  # both padding and averaging happen at 32 frames
    assert any("again" in r.sentence for r in recs) and any("first time" in r.sentence for r in recs)


def test_write_synthetic_layout(data, tmp_path):
    paths = write_synthetic(data, str(tmp_path))
    expect = {"charades_txt": ["charades_sta_train.txt", "charades_sta_test.txt", "Charades_v1_train.csv",
                               "Charades_v1_test.csv"],
              "charades_json": ["charades_sta_train.json", "charades_sta_test.json"],
              "activitynet": ["train.json", "val_1.json", "val_2.json"],
              "tacos": ["train.json", "val.json", "test.json"],
              "lighthouse": ["highlight_train_release.jsonl", "highlight_val_release.jsonl",
                             "highlight_test_release.jsonl"]}
    for folder, names in expect.items():
        for n in names:
            assert os.path.isfile(os.path.join(paths[folder], n)), (folder, n)
    assert os.path.isfile(paths["features_h5"]) and os.path.isfile(paths["features_grouped_h5"])
    assert len(os.listdir(paths["features_npy"])) == len(data.features)


def test_bad_arguments():
    with pytest.raises(ValueError, match="three positive counts"):
        make_synthetic(num_videos=(1, 0, 1))
