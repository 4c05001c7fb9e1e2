"""Feature stores (HDF5 flat and grouped, .npy folder), load-time checks and resampling."""
import pickle

import h5py
import numpy as np
import pytest

from fian_fast.data import HDF5Features, MemoryFeatures, NpyFolderFeatures, check_features, open_features, resample
from fian_fast.data.features import bin_edges


@pytest.fixture
def stores(tmp_path):
    rng = np.random.default_rng(0)
    feats = {f"v{i}": rng.standard_normal((5 + i, 6)).astype(np.float32) for i in range(4)}
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        for k, v in feats.items():
            f.create_dataset(k, data=v)
    with h5py.File(tmp_path / "grouped.hdf5", "w") as f:
        for k, v in feats.items():
            f.create_group(k).create_dataset("c3d_features", data=v)
    (tmp_path / "npy").mkdir()
    for k, v in feats.items():
        np.save(tmp_path / "npy" / f"{k}.npy", v)
    return feats, tmp_path


@pytest.mark.parametrize("name", ["flat.h5", "grouped.hdf5", "npy"])
def test_stores_return_the_features(stores, name):
    feats, root = stores
    store = open_features(str(root / name))
    assert store.keys() == set(feats)
    for k, v in feats.items():
        np.testing.assert_array_equal(store.get(k), v)
    assert store.dim() == 6


def test_hdf5_opened_once_per_process_and_never_pickled(stores):
    _, root = stores
    store = HDF5Features(str(root / "flat.h5"))
    assert store._file is None  # lazy
    store.get("v0")
    handle = store._file
    store.get("v1")
    assert store._file is handle  # one handle for every item
    clone = pickle.loads(pickle.dumps(store))
    assert clone._file is None and clone._pid is None
    np.testing.assert_array_equal(clone.get("v2"), store.get("v2"))


def test_hdf5_group_needs_key_when_ambiguous(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        g = f.create_group("v0")
        g.create_dataset("a", data=np.zeros((3, 2)))
        g.create_dataset("b", data=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="pass the dataset name"):
        HDF5Features(str(tmp_path / "g.h5")).get("v0")
    assert HDF5Features(str(tmp_path / "g.h5"), key="b").get("v0").shape == (3, 2)


def test_check_features_messages(stores, tmp_path):
    feats, root = stores
    store = open_features(str(root / "flat.h5"))
    assert check_features(store, ["v0", "v1"], expected_dim=6) == 6
    with pytest.raises(ValueError, match=r"flat.h5: 2 of 3 annotation ids missing \(first: 'AO8RW'\).*"
                                         r"--skip-missing-features"):
        check_features(store, ["v0", "AO8RW", "ZZ"])
    with pytest.raises(ValueError, match=r"feature dim 6, config expects 1024"):
        check_features(store, ["v0"], expected_dim=1024)
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(ValueError, match=r"empty.h5 is empty"):
        check_features(open_features(str(tmp_path / "empty.h5")), ["v0"])
    (tmp_path / "bad.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        open_features(str(tmp_path / "bad.h5"))
    with pytest.raises(ValueError, match="features file not found"):
        open_features(str(tmp_path / "missing.h5"))


def test_npy_store_errors(tmp_path):
    (tmp_path / "v0.npy").write_bytes(b"garbage")
    store = NpyFolderFeatures(str(tmp_path))
    with pytest.raises(ValueError, match="cannot read"):
        store.get("v0")
    with pytest.raises(ValueError, match="no entry for video id 'v9'"):
        store.get("v9")


def test_resample_bin_average():
    t, n = 10, 4
    feats = np.arange(t, dtype=np.float32)[:, None].repeat(2, axis=1)
    out, length = resample(feats, n)
    edges = bin_edges(t, n)  # [0, 2, 5, 8, 10] with round-half-even
    want = [feats[edges[i]:edges[i + 1]].mean(0) for i in range(n)]
    np.testing.assert_allclose(out, np.stack(want), rtol=0, atol=1e-6)
    assert length == n and out.dtype == np.float32


def test_resample_exact_length_is_identity():
    feats = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)
    out, length = resample(feats, 7)
    np.testing.assert_allclose(out, feats, atol=1e-6)
    assert length == 7


def test_resample_pads_short_videos():
    feats = np.ones((3, 2), dtype=np.float32)
    out, length = resample(feats, 8)
    assert length == 3 and out.shape == (8, 2)
    assert (out[:3] == 1).all() and (out[3:] == 0).all()


def test_resample_empty_bins_take_nearest_frame():
    feats = np.arange(3, dtype=np.float32)[:, None]
    out, length = resample(feats, 6, pad=False)  # stretch: most bins are empty
    assert length == 6
    # bin i centre (i + 0.5) * 3 / 6 -> frame floor(centre); non-empty bins average their frames
    edges = bin_edges(3, 6)
    for i in range(6):
        lo, hi = edges[i], edges[i + 1]
        want = feats[lo:hi].mean() if hi > lo else feats[min(2, int((i + 0.5) * 3 / 6))].item()
        assert out[i, 0] == pytest.approx(want)


def test_resample_rejects_bad_input():
    with pytest.raises(ValueError, match=r"features should be \[T, D\]"):
        resample(np.zeros((0, 3)), 4)
    with pytest.raises(ValueError, match="num_frames should be >= 1"):
        resample(np.zeros((2, 3)), 0)


def test_memory_store_and_1d_rows():
    store = MemoryFeatures({"a": np.zeros(5)})
    assert store.get("a").shape == (1, 5)


@pytest.fixture
def odd_stores(tmp_path):
    """Flat HDF5, grouped HDF5 and .npy folder where 'odd' has another dimension, 'nan' is all NaN
    and 'empty' has no clip."""
    feats = {"v0": np.ones((5, 6), np.float32), "v1": np.ones((3, 6), np.float32),
             "odd": np.ones((4, 7), np.float32), "nan": np.full((4, 6), np.nan, np.float32),
             "empty": np.zeros((0, 6), np.float32)}
    with h5py.File(tmp_path / "flat.h5", "w") as f, h5py.File(tmp_path / "grouped.hdf5", "w") as g:
        for k, v in feats.items():
            f.create_dataset(k, data=v)
            g.create_group(k).create_dataset("c3d_features", data=v)
    (tmp_path / "npy").mkdir()
    for k, v in feats.items():
        np.save(tmp_path / "npy" / f"{k}.npy", v)
    return tmp_path


@pytest.mark.parametrize("name", ["flat.h5", "grouped.hdf5", "npy"])
def test_every_video_checked_from_metadata(odd_stores, name, monkeypatch):
    store = open_features(str(odd_stores / name))
    monkeypatch.setattr(store, "_load", lambda vid: pytest.fail(f"array of {vid} read by a metadata check"))
    assert store.shape("v0") == (5, 6) and store.dim("odd") == 7
    assert check_features(store, ["v0", "v1", "nan"], expected_dim=6) == 6
    with pytest.raises(ValueError, match=r"videos differ in feature dimension: 6 \(2 videos, e.g. 'v0'\), "
                                         r"7 \(1 videos, e.g. 'odd'\)"):
        check_features(store, ["v0", "odd", "v1"])
    with pytest.raises(ValueError, match=rf"features .*{name}: video 'empty' should be a \[T, D\] array with "
                                         r"T >= 1 and D >= 1, got shape \(0, 6\)"):
        check_features(store, ["v0", "empty"])


@pytest.mark.parametrize("name", ["flat.h5", "grouped.hdf5", "npy"])
def test_non_finite_values_name_file_and_video(odd_stores, name):
    store = open_features(str(odd_stores / name))
    with pytest.raises(ValueError, match=rf"features .*{name}: video 'nan' has 24 non-finite values of 24 "
                                         r"\(24 NaN, 0 infinite\)"):
        store.get("nan")
    arr = np.ones((3, 2), np.float32)
    arr[1, 0] = np.inf
    with pytest.raises(ValueError, match=r"video 'x' has 1 non-finite values of 6 \(0 NaN, 1 infinite\)"):
        MemoryFeatures({"x": arr}).get("x")


def test_npy_header_shapes(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(5, np.float32))               # one clip of 5 values
    np.save(tmp_path / "b.npy", np.zeros((2, 3, 4), np.float32))
    (tmp_path / "c.npy").write_bytes(b"garbage")
    store = NpyFolderFeatures(str(tmp_path))
    assert store.shape("a") == (1, 5)
    with pytest.raises(ValueError, match=r"video 'b' should be a \[T, D\] array .* got shape \(2, 3, 4\)"):
        store.shape("b")
    with pytest.raises(ValueError, match=r"c.npy: cannot read as .npy"):
        store.shape("c")
