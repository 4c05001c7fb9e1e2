"""A built-in, deterministic synthetic grounding dataset, learnable on a CPU in minutes.

Each video is a sequence of ``T`` feature clips (T between 20 and 64, half a second each, so some
videos are padded and others averaged by :func:`~fian_fast.data.features.resample`). Clips are
background noise plus a per-video "scene" vector. Two or three *events* are planted, each a span
of clips carrying the feature pattern of its event type (ten types, each tied to words such as
"opens the door"); *distractors* (patterns no query names) are planted too, and in about a third
of the videos one event type occurs twice. Every event gets a query whose ground truth is its
span:

* a type that occurs once: ``"the person opens the door."``, sometimes with context,
  ``"the person opens the door after the light turns on."``;
* a type that occurs twice: ``"the person opens the door for the first time."`` or
  ``"the person opens the door again."`` -- the query alone fixes which span is meant.

Word vectors come from GloVe like the real datasets, so the model has to tie word vectors to
feature patterns. :func:`write_synthetic` writes the data in every public format (Charades-STA
txt + csv and json, ActivityNet json, TACoS json, lighthouse jsonl) with features as HDF5 (flat
and grouped) and as an ``.npy`` folder, so the readers are tested end to end on it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

from .formats import write_charades_txt, write_grounding_json, write_lighthouse, write_tacos
from .records import Record

__all__ = ["EVENTS", "SyntheticData", "make_synthetic", "write_synthetic", "CLIP_SECONDS"]

#: (verb phrase, clause) per event type.
EVENTS = (
    ("opens the door", "the door opens"),
    ("turns on the light", "the light turns on"),
    ("sits on the chair", "someone sits down"),
    ("drinks a cup of coffee", "the coffee is poured"),
    ("reads a book", "the book is opened"),
    ("closes the window", "the window is closed"),
    ("eats a sandwich", "the sandwich is served"),
    ("washes the dishes", "the water is running"),
    ("picks up the phone", "the phone rings"),
    ("puts on a jacket", "the jacket is taken"),
)
CLIP_SECONDS = 0.5
NUM_DISTRACTORS = 3


@dataclass
class SyntheticData:
    """Records per split (``train``, ``val``, ``test``) and features ``{video_id: float32 [T, D]}``."""

    splits: Dict[str, List[Record]]
    features: Dict[str, np.ndarray]
    video_dim: int
    seed: int
    info: Dict[str, int] = field(default_factory=dict)


def _place(rng: np.random.Generator, t: int, lengths: Sequence[int]) -> List[tuple]:
    """Non-overlapping spans [a, b) of the given lengths in random order over ``t`` clips."""
    gaps = t - sum(lengths)
    cuts = np.sort(rng.integers(0, gaps + 1, size=len(lengths)))
    spans, pos, prev = [], 0, 0
    for cut, length in zip(cuts, lengths):
        pos += int(cut - prev)
        prev = cut
        spans.append((pos, pos + length))
        pos += length
    return spans


def _video(rng, vid: str, patterns: np.ndarray, distractors: np.ndarray, counters: Dict[str, int]):
    t = int(rng.integers(20, 65))
    dim = patterns.shape[1]
    n_events = int(rng.integers(2, 4))
    types = list(rng.choice(len(EVENTS), size=n_events, replace=False))
    repeat = rng.random() < 0.35
    if repeat:
        types.append(types[int(rng.integers(0, n_events))])
    n_distract = int(rng.integers(0, 2))
    min_len, max_len = max(2, t // 10), max(3, int(t * 0.3))
    slots = [("event", k) for k in types] + [("distractor", int(rng.integers(0, NUM_DISTRACTORS)))] * n_distract
    order = rng.permutation(len(slots))
    slots = [slots[i] for i in order]
    while True:
        lengths = [int(rng.integers(min_len, max_len + 1)) for _ in slots]
        if sum(lengths) <= t:
            break
    spans = _place(rng, t, lengths)
    feats = 0.3 * rng.standard_normal((t, dim)) + 0.3 * rng.standard_normal(dim)
    for (kind, k), (a, b) in zip(slots, spans):
        feats[a:b] += (patterns if kind == "event" else distractors)[k]
    events = [(k, a, b) for (kind, k), (a, b) in zip(slots, spans) if kind == "event"]
    duration = t * CLIP_SECONDS
    records = []
    for pos, (k, a, b) in enumerate(events):
        same = [j for j, (k2, _, _) in enumerate(events) if k2 == k]
        phrase = f"the person {EVENTS[k][0]}"
        if len(same) > 1:
            sentence = f"{phrase} for the first time." if same[0] == pos else f"{phrase} again."
            counters["repeated"] += 1
        elif rng.random() < 0.4 and len(events) > 1:
            j = int(rng.integers(0, len(events) - 1))
            j = j + (j >= pos)
            other = EVENTS[events[j][0]][1]
            sentence = f"{phrase} {'after' if j < pos else 'before'} {other}."
            counters["context"] += 1
        else:
            sentence = f"{phrase}."
            counters["plain"] += 1
        records.append(Record(vid, duration, sentence, a * CLIP_SECONDS, b * CLIP_SECONDS, str(pos)))
    return feats.astype(np.float32), records


def make_synthetic(seed: int = 0, num_videos: Sequence[int] = (1200, 150, 200), video_dim: int = 32) -> SyntheticData:
    """Build the synthetic dataset (deterministic for a given ``seed`` and sizes).

    Args:
        seed: random seed.
        num_videos: videos in (train, val, test); each video yields 2 to 4 queries.
        video_dim: feature dimension D.
    """
    if len(num_videos) != 3 or min(num_videos) < 1:
        raise ValueError(f"make_synthetic: num_videos should be three positive counts (train, val, test), got {num_videos}")
    if video_dim < 1:
        raise ValueError(f"make_synthetic: video_dim should be >= 1, got {video_dim}")
    rng = np.random.default_rng(seed)
    # Patterns are fixed by a seed of their own so that every split and size shares them.
    prng = np.random.default_rng(10_000 + seed)
    patterns = prng.standard_normal((len(EVENTS), video_dim))
    # Per-clip amplitude about 0.8 against background noise of 0.3 per dimension.
    patterns *= 0.8 * np.sqrt(video_dim) / np.linalg.norm(patterns, axis=1, keepdims=True)
    distractors = prng.standard_normal((NUM_DISTRACTORS, video_dim))
    distractors *= 0.8 * np.sqrt(video_dim) / np.linalg.norm(distractors, axis=1, keepdims=True)
    features: Dict[str, np.ndarray] = {}
    splits: Dict[str, List[Record]] = {}
    counters = {"plain": 0, "context": 0, "repeated": 0}
    for split, n in zip(("train", "val", "test"), num_videos):
        recs: List[Record] = []
        for i in range(n):
            vid = f"syn_{split}_{i:05d}"
            feats, r = _video(rng, vid, patterns, distractors, counters)
            features[vid] = feats
            recs.extend(r)
        splits[split] = recs
    return SyntheticData(splits, features, video_dim, seed, info=counters)


def write_synthetic(data: SyntheticData, root: str) -> Dict[str, str]:
    """Write ``data`` under ``root`` in every public layout.

    Layout (``--data-dir`` for each format is the sub-folder):

    * ``charades_txt/``: ``charades_sta_{train,test}.txt``, ``Charades_v1_{train,test}.csv``
      (Charades-STA has no val split: train holds train + val);
    * ``charades_json/``: ``charades_sta_{train,test}.json``;
    * ``activitynet/``: ``train.json``, ``val_1.json``, ``val_2.json``;
    * ``tacos/``: ``train.json``, ``val.json``, ``test.json`` (frames at 30 fps);
    * ``lighthouse/``: ``highlight_{train,val,test}_release.jsonl`` (QVHighlights' names; the test
      file without ``relevant_windows``, as distributed);
    * features: ``features.h5`` (a dataset per video), ``features_grouped.h5``
      (``f[vid]["c3d_features"]``) and ``features_npy/VID.npy``.

    Returns ``{name: path}`` of the folders and feature files.
    """
    import h5py

    paths = {name: os.path.join(root, name) for name in ("charades_txt", "charades_json", "activitynet", "tacos",
                                                          "lighthouse", "features_npy")}
    for p in paths.values():
        os.makedirs(p, exist_ok=True)
    tr, va, te = data.splits["train"], data.splits["val"], data.splits["test"]
    write_charades_txt(tr + va, os.path.join(paths["charades_txt"], "charades_sta_train.txt"),
                       os.path.join(paths["charades_txt"], "Charades_v1_train.csv"))
    write_charades_txt(te, os.path.join(paths["charades_txt"], "charades_sta_test.txt"),
                       os.path.join(paths["charades_txt"], "Charades_v1_test.csv"))
    write_grounding_json(tr + va, os.path.join(paths["charades_json"], "charades_sta_train.json"))
    write_grounding_json(te, os.path.join(paths["charades_json"], "charades_sta_test.json"))
    for recs, name in ((tr, "train"), (va, "val_1"), (te, "val_2")):
        write_grounding_json(recs, os.path.join(paths["activitynet"], f"{name}.json"))
    for recs, name in ((tr, "train"), (va, "val"), (te, "test")):
        write_tacos(recs, os.path.join(paths["tacos"], f"{name}.json"), fps=30.0)
        write_lighthouse(recs, os.path.join(paths["lighthouse"], f"highlight_{name}_release.jsonl"),
                         windows=name != "test")
    paths["features_h5"] = os.path.join(root, "features.h5")
    paths["features_grouped_h5"] = os.path.join(root, "features_grouped.h5")
    with h5py.File(paths["features_h5"], "w") as flat, h5py.File(paths["features_grouped_h5"], "w") as grouped:
        for vid, feats in data.features.items():
            flat.create_dataset(vid, data=feats)
            grouped.create_group(vid).create_dataset("c3d_features", data=feats)
            np.save(os.path.join(paths["features_npy"], vid + ".npy"), feats)
    return paths
