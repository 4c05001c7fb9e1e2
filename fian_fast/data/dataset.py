"""Torch dataset and collate producing exactly the inputs of :class:`fian_fast.FIAN`.

:class:`GroundingDataset` pairs cleaned records with a feature store and a vocabulary; items are
resampled to ``cfg.num_frames`` and queries encoded (truncated to ``cfg.max_query_length``
tokens, counted). :func:`collate` stacks items into a :class:`Batch`. :func:`load_split` reads
one split of a dataset from its public files (or the built-in synthetic data), cleans it,
applies the several-windows policy, optionally drops queries without features and keeps the
first N, checks the features of every remaining video and builds the dataset; every change is
counted in the split's :class:`~fian_fast.data.records.CleaningReport`.
"""
from __future__ import annotations

import os
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_batch
from .features import FeatureStore, MemoryFeatures, check_features, open_features, resample
from .formats import read_annotations
from .records import Record, clean_records
from .text import Vocabulary, tokenize, word_vectors
from .windows import apply_windows

__all__ = ["Batch", "GroundingDataset", "collate", "random_batch", "load_split", "DATASETS"]

DATASETS = ("synthetic", "charades", "tacos", "activitynet", "lighthouse")


class Batch(NamedTuple):
    """One batch of model inputs.

    Attributes:
        video: float32 [B, Lv, video_dim], Lv = cfg.num_frames; frames >= video_lengths are zeros.
        video_lengths: int64 [B] in [1, Lv].
        query: float32 [B, Lq, word_dim] word vectors, Lq = longest query of the batch (<= max_query_length).
        query_lengths: int64 [B] in [1, Lq].
        gt: float32 [B, 2] ground-truth (start, end) as fractions of the duration, in [0, 1].
        durations: float32 [B] seconds.
        video_ids, sentences: the batch's video ids and sentences (lists of str).
        gt_windows: per query every relevant window, float64 [G, 2] seconds, for queries with
            several (None for the others); None when no query of the batch has several.
        gt_seconds, duration_seconds: float64 numpy [B, 2] and [B], the annotation's ground truth
            and durations exactly as read (host, never moved): what the evaluator grades, where
            ``gt`` and ``durations`` are their float32 forms for the model. None for batches of
            items that do not carry them.
    """

    video: torch.Tensor
    video_lengths: torch.Tensor
    query: torch.Tensor
    query_lengths: torch.Tensor
    gt: torch.Tensor
    durations: torch.Tensor
    video_ids: List[str]
    sentences: List[str]
    gt_windows: Optional[List[Optional[np.ndarray]]] = None
    gt_seconds: Optional[np.ndarray] = None
    duration_seconds: Optional[np.ndarray] = None

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """The tensors on ``device``; the host fields (ids, sentences, seconds) as they are."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return self._replace(video=move(self.video), video_lengths=move(self.video_lengths), query=move(self.query),
                             query_lengths=move(self.query_lengths), gt=move(self.gt),
                             durations=move(self.durations))

    def model_inputs(self) -> tuple:
        """``(video, video_lengths, query, query_lengths)``, the positional inputs of ``FIAN``."""
        return self.video, self.video_lengths, self.query, self.query_lengths


class GroundingDataset(Dataset):
    """Items ``(video [Lv, D], video_length, query [L, word_dim], gt [2], duration, video_id, sentence,
    windows)``: ``gt`` the float32 fractions of the duration, ``duration`` the annotation's seconds,
    ``windows`` float64 [G, 2] seconds, every relevant window as read (first: the ground truth).

    Args:
        records: cleaned records (start < end within [0, duration]).
        features: the feature store holding every record's video.
        vocab: vocabulary; tokens it lacks are added from its source (see :meth:`Vocabulary.extend`).
        num_frames: Lv (``cfg.num_frames``).
        max_query_length: queries keep their first ``max_query_length`` tokens.
        cache_videos: keep resampled videos in memory (per process) after first use.

    Attributes:
        truncated: indices of the records whose query had more than ``max_query_length`` tokens.
    """

    def __init__(self, records: Sequence[Record], features: FeatureStore, vocab: Vocabulary, num_frames: int,
                 max_query_length: int, cache_videos: bool = False):
        self.records = list(records)
        self.features = features
        self.vocab = vocab
        self.num_frames = num_frames
        self.max_query_length = max_query_length
        self.cache_videos = cache_videos
        self._cache: Dict[str, tuple] = {}
        vocab.extend(r.sentence for r in self.records)
        self.queries = []
        self.truncated: List[int] = []
        for i, r in enumerate(self.records):
            if len(tokenize(r.sentence)) > max_query_length:
                self.truncated.append(i)
            try:
                self.queries.append(vocab.encode(r.sentence, max_query_length))
            except ValueError:
                raise ValueError(f"query {r.video_id}/{r.query_id} has no words: {r.sentence!r}") from None

    def __len__(self) -> int:
        return len(self.records)

    def video(self, video_id: str) -> tuple:
        """``(float32 tensor [Lv, D], length)`` of ``video_id`` after resampling."""
        hit = self._cache.get(video_id)
        if hit is not None:
            return hit
        arr, length = resample(self.features.get(video_id), self.num_frames)
        out = (torch.from_numpy(arr), length)
        if self.cache_videos:
            self._cache[video_id] = out
        return out

    def __getitem__(self, i: int) -> tuple:
        r = self.records[i]
        video, length = self.video(r.video_id)
        s, e = r.fraction
        windows = np.asarray(r.windows if len(r.windows) > 1 else ((r.start, r.end),), dtype=np.float64)
        return (video, length, self.queries[i], torch.tensor([s, e], dtype=torch.float32), r.duration, r.video_id,
                r.sentence, windows)


def collate(items: Sequence[tuple]) -> Batch:
    """Stack dataset items into a :class:`Batch` (queries zero-padded to the longest). Items carrying
    their windows (the 8th field) give the batch ``gt_seconds`` and ``duration_seconds`` exactly as
    read, and ``gt_windows`` for the queries with several.

    Stacking goes through numpy: ``torch.stack`` of a Charades-sized batch (64 x 64 x 1024) took
    0.77 s with two intra-op threads on a busy 2-core machine against 2 ms for ``np.stack``."""
    videos, vlens, queries, gts, durations, vids, sentences, *windows = zip(*items)
    windows = [None if w is None else np.asarray(w, dtype=np.float64).reshape(-1, 2) for w in windows[0]] \
        if windows else [None] * len(items)
    exact = all(w is not None for w in windows)
    gt_seconds = np.stack([w[0] for w in windows]) if exact else None
    several = [w if w is not None and len(w) > 1 else None for w in windows]
    qlens = [q.shape[0] for q in queries]
    query = np.zeros((len(items), max(qlens), queries[0].shape[1]), dtype=np.float32)
    for b, q in enumerate(queries):
        query[b, : q.shape[0]] = q.numpy()
    batch = Batch(torch.from_numpy(np.stack([v.numpy() for v in videos])), torch.tensor(vlens, dtype=torch.int64),
                  torch.from_numpy(query), torch.tensor(qlens, dtype=torch.int64),
                  torch.from_numpy(np.stack([g.numpy() for g in gts])), torch.tensor(durations, dtype=torch.float32),
                  list(vids), list(sentences), several if any(w is not None for w in several) else None,
                  gt_seconds, np.asarray(durations, dtype=np.float64) if exact else None)
    # Values are checked here, on the host, where they enter; the model, the trainer and the
    # evaluator then take the trusted path. The frames were checked finite when read
    # (FeatureStore.get); the words, lengths, ground truth and durations are checked here.
    check_batch("collate", *batch.model_inputs(), gt=batch.gt, durations=batch.durations, finite=("query",))
    return batch


def random_batch(cfg, batch_size: int, seed: int = 0) -> Batch:
    """A random batch of ``cfg``'s shapes through :func:`collate`, for benchmarks, profiles and
    smoke tests (random values, nothing to learn): ``batch_size`` samples of ``cfg.num_frames``
    frames, video lengths in ``[num_frames // 2, num_frames]``, queries of 3 to
    ``cfg.max_query_length`` words (the longest one always present, so every batch of a config has
    one shape), ground truth of at least 5 % of the video, durations of 30 s. Host tensors."""
    g = torch.Generator().manual_seed(seed)
    T, Lq = cfg.num_frames, cfg.max_query_length
    video_lengths = torch.randint(T // 2, T + 1, (batch_size,), generator=g).tolist()
    query_lengths = torch.randint(min(3, Lq), Lq + 1, (batch_size,), generator=g).tolist()
    query_lengths[0] = Lq
    items = []
    for vl, ql in zip(video_lengths, query_lengths):
        video = torch.randn(T, cfg.video_dim, generator=g)
        video[vl:] = 0
        start = float(torch.rand((), generator=g)) * 0.7
        end = min(1.0, start + 0.05 + float(torch.rand((), generator=g)) * (0.95 - start))
        items.append((video, vl, torch.randn(ql, cfg.word_dim, generator=g), torch.tensor([start, end]), 30.0,
                      "", ""))
    return collate(items)


_SYNTHETIC_CACHE: Dict[tuple, object] = {}


def synthetic_data(seed: int = 0, num_videos=(1200, 150, 200), video_dim: int = 32):
    """The synthetic data, built once per process for given arguments."""
    from .synthetic import make_synthetic

    key = (seed, tuple(num_videos), video_dim)
    if key not in _SYNTHETIC_CACHE:
        _SYNTHETIC_CACHE[key] = make_synthetic(seed, num_videos, video_dim)
    return _SYNTHETIC_CACHE[key]


def load_split(dataset: str, split: str, num_frames: int, max_query_length: int, video_dim: Optional[int] = None,
               data_dir: Optional[str] = None, features: Optional[str] = None, vocab: Optional[Vocabulary] = None,
               glove: Optional[str] = None, feature_key: Optional[str] = None, strict: bool = False,
               synthetic_sizes=(1200, 150, 200), seed: int = 0, cache_videos: bool = False, windows: str = "first",
               expand_windows: Optional[bool] = None, limit: Optional[int] = None,
               skip_missing_features: bool = False):
    """Read, clean and check one split and build its :class:`GroundingDataset`.

    Args:
        dataset: one of :data:`DATASETS`. ``synthetic`` without ``data_dir`` uses the built-in data.
        split: ``train``, ``val`` or ``test``.
        num_frames, max_query_length: from the config.
        video_dim: expected feature dimension, checked against the features; ``None`` takes the
            features' own (``dataset.video_dim``).
        data_dir: folder of the annotation files under their public names.
        features: HDF5 file or ``.npy`` folder (required with ``data_dir``).
        vocab: vocabulary to extend; a new one is built from ``glove`` (default: GloVe 6B 50-d) if None.
        strict: raise on queries the cleaning would drop.
        windows: several-windows policy, ``first`` or ``each`` (:mod:`fian_fast.data.windows`).
        expand_windows: with ``each``, one query per window; default: for the train split only.
        limit: keep the first ``limit`` queries (after cleaning) of the split.
        skip_missing_features: drop (and count as ``missing_features``) the queries whose video
            has no features, instead of refusing the split.

    Returns:
        ``(GroundingDataset, CleaningReport)``; the dataset's ``video_dim`` is the features'
        dimension and ``features_path`` their file.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset should be one of {DATASETS}, got {dataset!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"load_split: limit should be >= 1 query, got {limit}")
    if dataset == "synthetic" and data_dir is None:
        data = synthetic_data(seed, synthetic_sizes, video_dim or 32)
        if split not in data.splits:
            raise ValueError(f"split should be one of train, val, test, got {split!r}")
        raw, source = data.splits[split], f"synthetic:{split}"
        store: FeatureStore = MemoryFeatures(data.features, path="<synthetic>")
    else:
        if data_dir is None or features is None:
            raise ValueError(f"dataset {dataset!r} needs --data-dir (annotation files) and --features "
                             f"(HDF5 file or .npy folder)")
        layout = "activitynet" if dataset == "synthetic" else dataset
        raw, source = read_annotations(layout, data_dir, split)
        if not os.path.exists(features):
            raise ValueError(f"features not found: {features}")
        store = open_features(features, key=feature_key)
    records, report = clean_records(raw, source, strict=strict)
    report.max_query_length = max_query_length
    records = apply_windows(records, report, windows, split == "train" if expand_windows is None else expand_windows)
    if skip_missing_features:
        keys = store.keys()
        for r in records:
            if r.video_id not in keys:
                report.note("missing_features", f"{r.video_id}/{r.query_id}" if r.query_id else r.video_id)
        records = [r for r in records if r.video_id in keys]
        if not records:
            raise ValueError(f"{source}: no query left: none of its videos has features in {store.path} "
                             f"({report.summary()})")
    if limit is not None and len(records) > limit:
        report.note("limited", f"{records[limit].video_id}/{records[limit].query_id}", len(records) - limit)
        records = records[:limit]
    report.kept = len(records)
    dim = check_features(store, (r.video_id for r in records), expected_dim=video_dim)
    if vocab is None:
        vocab = Vocabulary.build((r.sentence for r in records), word_vectors(glove))
    ds = GroundingDataset(records, store, vocab, num_frames, max_query_length, cache_videos=cache_videos)
    ds.video_dim = dim
    ds.features_path = store.path
    for i in ds.truncated:
        r = records[i]
        report.note("truncated_query", f"{r.video_id}/{r.query_id}" if r.query_id else r.video_id)
    return ds, report
