"""Video feature stores and fixed-length resampling (docs/protocols.md, "Feature files").

A feature store maps a video id to its features ``float32 [T, D]`` (T clips of dimension D):

* :class:`HDF5Features` -- one HDF5 file with a dataset per video id (``f[vid]``, TACoS C3D,
  Charades I3D/VGG) or a group per video holding a named dataset (``f[vid]["c3d_features"]``,
  ActivityNet C3D). The file is opened lazily, once per process (DataLoader workers each open
  their own handle on first use; the handle is never pickled).
* :class:`NpyFolderFeatures` -- a folder of ``VID.npy`` files.
* :class:`MemoryFeatures` -- a dict, used by the synthetic data.

:func:`check_features` verifies, when a split is loaded, that every annotation id has features
and that every one of those videos is a ``[T, D]`` array with ``T >= 1`` and one common ``D``:
shapes come from the file's metadata (HDF5 dataset shapes, ``.npy`` headers), without reading
the arrays. Values are checked where they are read (:meth:`FeatureStore.get`: every value
finite); every message names the file and the video. :func:`resample` maps a video to
``num_frames`` steps: longer videos are averaged over equal bins, shorter ones are zero-padded
and their real length returned.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

__all__ = ["FeatureStore", "HDF5Features", "NpyFolderFeatures", "MemoryFeatures", "open_features",
           "check_features", "resample"]

#: Dataset names looked for inside a per-video HDF5 group when no key is given.
GROUP_KEYS = ("c3d_features", "features", "i3d_features", "feature", "feats")


def _as_2d_shape(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    return (1, shape[0]) if len(shape) == 1 else tuple(shape)


class FeatureStore:
    """Mapping ``video_id -> float32 [T, D]``. Subclasses implement ``keys``, ``_load`` and
    ``_shape`` (the stored array's shape, from metadata only)."""

    path: str = "<memory>"

    def keys(self) -> set:
        raise NotImplementedError

    def _load(self, video_id: str) -> np.ndarray:
        raise NotImplementedError

    def _shape(self, video_id: str) -> Tuple[int, ...]:
        raise NotImplementedError

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.keys()

    def _check_shape(self, video_id: str, shape: Tuple[int, ...]) -> Tuple[int, int]:
        shape = _as_2d_shape(tuple(int(n) for n in shape))
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"features {self.path}: video {video_id!r} should be a [T, D] array with T >= 1 "
                             f"and D >= 1, got shape {shape}")
        return shape

    def shape(self, video_id: str) -> Tuple[int, int]:
        """``(T, D)`` of ``video_id`` from the store's metadata, without reading the array (a 1-D
        array of D values is one clip)."""
        if video_id not in self:
            raise ValueError(f"features {self.path}: no entry for video id {video_id!r}")
        return self._check_shape(video_id, self._shape(video_id))

    def get(self, video_id: str) -> np.ndarray:
        """Features of ``video_id`` as float32 [T, D] (T >= 1, every value finite)."""
        if video_id not in self:
            raise ValueError(f"features {self.path}: no entry for video id {video_id!r}")
        arr = np.asarray(self._load(video_id), dtype=np.float32)
        self._check_shape(video_id, arr.shape)
        arr = arr.reshape(_as_2d_shape(arr.shape))
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(arr.size - np.count_nonzero(finite))
            nan = int(np.count_nonzero(np.isnan(arr)))
            raise ValueError(f"features {self.path}: video {video_id!r} has {bad} non-finite values of {arr.size} "
                             f"({nan} NaN, {bad - nan} infinite)")
        return arr

    def dim(self, video_id: Optional[str] = None) -> int:
        """Feature dimension D of ``video_id`` (or the first key), from metadata."""
        keys = self.keys()
        if not keys:
            raise ValueError(f"features {self.path}: the store is empty (no video ids)")
        return int(self.shape(video_id if video_id is not None else min(keys))[1])


class MemoryFeatures(FeatureStore):
    """Features held in a dict ``{video_id: array [T, D]}``."""

    def __init__(self, features: Dict[str, np.ndarray], path: str = "<memory>"):
        self.features = features
        self.path = path

    def keys(self) -> set:
        return set(self.features)

    def _load(self, video_id: str) -> np.ndarray:
        return self.features[video_id]

    def _shape(self, video_id: str) -> Tuple[int, ...]:
        return np.shape(self.features[video_id])


class NpyFolderFeatures(FeatureStore):
    """A folder of per-video ``VID.npy`` files, each [T, D]."""

    def __init__(self, folder: str):
        if not os.path.isdir(folder):
            raise ValueError(f"features folder not found: {folder}")
        self.path = folder
        self._keys = {name[:-4] for name in os.listdir(folder) if name.endswith(".npy")}

    def keys(self) -> set:
        return self._keys

    def _load(self, video_id: str) -> np.ndarray:
        file = os.path.join(self.path, video_id + ".npy")
        try:
            return np.load(file, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise ValueError(f"features {file}: cannot read ({e})") from None

    def _shape(self, video_id: str) -> Tuple[int, ...]:
        file = os.path.join(self.path, video_id + ".npy")
        try:
            with open(file, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, _ = read_header(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"features {file}: cannot read as .npy ({e})") from None
        return shape


class HDF5Features(FeatureStore):
    """One HDF5 file: ``f[vid]`` is the [T, D] dataset, or a group holding it under ``key``
    (default: the first of ``c3d_features``, ``features``, ... present, or the group's only dataset)."""

    def __init__(self, path: str, key: Optional[str] = None):
        if not os.path.isfile(path):
            raise ValueError(f"features file not found: {path}")
        self.path = path
        self.key = key
        self._file = None
        self._pid = None
        try:
            import h5py
            with h5py.File(path, "r") as f:
                self._keys = set(f.keys())
        except OSError as e:
            raise ValueError(f"features file {path} is not a readable HDF5 file ({e})") from None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        state["_pid"] = None
        return state

    def _handle(self):
        # h5py handles are not fork- or pickle-safe: each process opens the file once, on first use.
        if self._file is None or self._pid != os.getpid():
            import h5py
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def keys(self) -> set:
        return self._keys

    def _node(self, video_id: str):
        import h5py
        node = self._handle()[video_id]
        if isinstance(node, h5py.Group):
            names = [self.key] if self.key else [k for k in GROUP_KEYS if k in node]
            if not names:
                datasets = [k for k in node.keys() if isinstance(node[k], h5py.Dataset)]
                if len(datasets) != 1:
                    raise ValueError(f"features {self.path}: group {video_id!r} holds {sorted(node.keys())}; "
                                     f"pass the dataset name (e.g. c3d_features)")
                names = datasets
            if names[0] not in node:
                raise ValueError(f"features {self.path}: group {video_id!r} has no dataset {names[0]!r} "
                                 f"(found {sorted(node.keys())})")
            node = node[names[0]]
        return node

    def _load(self, video_id: str) -> np.ndarray:
        return self._node(video_id)[()]

    def _shape(self, video_id: str) -> Tuple[int, ...]:
        return self._node(video_id).shape

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def open_features(path: str, key: Optional[str] = None) -> FeatureStore:
    """An HDF5 file (``.h5``/``.hdf5``/any file) or a folder of ``.npy`` files."""
    if os.path.isdir(path):
        return NpyFolderFeatures(path)
    return HDF5Features(path, key=key)


def check_features(store: FeatureStore, video_ids: Iterable[str], expected_dim: Optional[int] = None) -> int:
    """Check the features of every annotation video id, from the store's metadata: each id has an
    entry, each entry is ``[T, D]`` with ``T >= 1``, and every ``D`` is the same (and equals
    ``expected_dim`` when given).

    Returns the feature dimension. Raises ``ValueError`` such as
    ``"features file X: 12 of 40 annotation ids missing (first: 'AO8RW'); the file has 0 ids"``,
    ``"features X: video 'v3' should be a [T, D] array with T >= 1 and D >= 1, got shape (0, 500)"``,
    ``"features file X: videos differ in feature dimension: 500 (38 videos, e.g. 'v0'), 4096
    (2 videos, e.g. 'v7')"`` or ``"features file X: feature dim 4096, config expects 1024"``.
    """
    wanted = sorted(set(video_ids))
    keys = store.keys()
    if not keys:
        raise ValueError(f"features file {store.path} is empty (no video ids)")
    missing = [v for v in wanted if v not in keys]
    if missing:
        example = sorted(keys)[0]
        raise ValueError(f"features file {store.path}: {len(missing)} of {len(wanted)} annotation ids missing "
                         f"(first: {missing[0]!r}); the file has {len(keys)} ids, e.g. {example!r} "
                         f"(--skip-missing-features drops their queries, counted)")
    by_dim: Dict[int, list] = {}
    for vid in wanted or [min(keys)]:
        by_dim.setdefault(store.shape(vid)[1], []).append(vid)
    if len(by_dim) > 1:
        groups = sorted(by_dim.items(), key=lambda kv: -len(kv[1]))
        desc = ", ".join(f"{d} ({len(v)} videos, e.g. {v[0]!r})" for d, v in groups)
        raise ValueError(f"features file {store.path}: videos differ in feature dimension: {desc}")
    dim = next(iter(by_dim))
    if expected_dim is not None and dim != expected_dim:
        raise ValueError(f"features file {store.path}: feature dim {dim}, config expects {expected_dim}")
    return dim


def bin_edges(length: int, num_bins: int) -> np.ndarray:
    """Edges ``e`` [num_bins + 1] of ``num_bins`` equal bins over ``length`` frames: bin i holds
    frames ``e[i] <= t < e[i+1]`` (``e[i] = round(i * length / num_bins)``)."""
    return np.round(np.linspace(0, length, num_bins + 1)).astype(np.int64)


def resample(features: np.ndarray, num_frames: int, pad: bool = True) -> Tuple[np.ndarray, int]:
    """Map ``features`` [T, D] to the fixed length ``num_frames``.

    * ``T >= num_frames``: bin i (normalised time ``[i/N, (i+1)/N]``) is the mean of the frames
      that fall into it; an empty bin (possible through rounding) takes its nearest frame.
      The length is ``num_frames``.
    * ``T < num_frames`` and ``pad``: frames are kept as they are, followed by zeros; the length
      is ``T`` (the model masks the padding). Without ``pad`` they are stretched with the same
      binning, empty bins taking the nearest frame.

    Returns:
        (float32 [num_frames, D], length int in [1, num_frames]).
    """
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] < 1:
        raise ValueError(f"resample: features should be [T, D] with T >= 1, got shape {feats.shape}")
    if num_frames < 1:
        raise ValueError(f"resample: num_frames should be >= 1, got {num_frames}")
    t, d = feats.shape
    if t < num_frames and pad:
        out = np.zeros((num_frames, d), dtype=np.float32)
        out[:t] = feats
        return out, t
    edges = bin_edges(t, num_frames)
    counts = np.diff(edges)
    if (counts > 0).all():  # always the case for T >= num_frames: one vectorized pass
        out = np.add.reduceat(feats, edges[:-1], axis=0) / counts[:, None].astype(np.float32)
        return out.astype(np.float32, copy=False), num_frames
    out = np.empty((num_frames, d), dtype=np.float32)
    for i in range(num_frames):
        lo, hi = int(edges[i]), int(edges[i + 1])
        if hi > lo:
            out[i] = feats[lo:hi].mean(axis=0)
        else:
            # nearest frame to the bin's centre (i + 0.5) * T / N
            out[i] = feats[min(t - 1, int((i + 0.5) * t / num_frames))]
    return out, num_frames
