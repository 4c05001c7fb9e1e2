"""The ``fian-fast`` command line: train -> evaluate end to end on synthetic data written in every
public format, predict, visualize, demo, and one-line errors on bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fian_fast.cli import main
from fian_fast.data import make_synthetic, write_synthetic

TINY = ["--preset", "synthetic", "--epochs", "1", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("public")
    data = make_synthetic(seed=5, num_videos=(10, 3, 3), video_dim=32)
    paths = write_synthetic(data, str(root))
    paths["root"] = str(root)
    paths["video"] = str(root / "video.npy")
    np.save(paths["video"], data.features["syn_test_00000"])
    return paths


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("dataset,folder,features", [
    ("charades", "charades_txt", "features_h5"),
    ("charades", "charades_json", "features_npy"),
    ("activitynet", "activitynet", "features_grouped_h5"),
    ("tacos", "tacos", "features_h5"),
    ("lighthouse", "lighthouse", "features_npy"),
])
def test_train_then_evaluate_each_format(files, tmp_path, capsys, dataset, folder, features):
    data = ["--dataset", dataset, "--data-dir", files[folder], "--features", files[features]]
    code, out, err = run(["train", *data, "--out", str(tmp_path), *TINY], capsys)
    assert code == 0, err
    assert "kept" in err and os.path.isfile(tmp_path / "best.pt")
    code, out, err = run(["evaluate", "--checkpoint", str(tmp_path / "best.pt"), *data, "--json"], capsys)
    assert code == 0, err
    obj = json.loads(out)
    assert obj["protocol"] == "2dtan" and obj["num_queries"] > 0
    expect = {"charades": (0.5, 0.7), "activitynet": (0.3, 0.5, 0.7), "tacos": (0.1, 0.3, 0.5, 0.7),
              "lighthouse": (0.3, 0.5, 0.7)}[dataset]
    assert set(obj["metrics"]) == {f"R{n}@{m:g}" for m in expect for n in (1, 5)} | {"mIoU"}
    assert all(0 <= v <= 100 for v in obj["metrics"].values())


@pytest.fixture(scope="module")
def checkpoint(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = ["train", "--dataset", "tacos", "--data-dir", files["tacos"], "--features", files["features_h5"],
            "--out", str(out), *TINY]
    assert main(argv) == 0
    return str(out / "best.pt")


def test_predict_prints_segments(checkpoint, files, capsys):
    code, out, err = run(["predict", "--checkpoint", checkpoint, "--features", files["video"], "--duration", "20",
                          "--query", "the person opens the door.", "--top-n", "3"], capsys)
    assert code == 0, err
    lines = [l for l in out.splitlines() if l[:2] in ("1.", "2.", "3.")]
    assert len(lines) == 3 and "score" in lines[0]
    code, out, _ = run(["predict", "--checkpoint", checkpoint, "--features", files["video"], "--duration", "20",
                        "--query", "the person reads a zzyzxq book", "--json"], capsys)
    segs = json.loads(out)["segments"]
    assert code == 0 and 1 <= len(segs) <= 5
    assert all(0 <= s["start"] <= s["end"] <= 20 + 1e-3 for s in segs)


def test_evaluate_both_protocols_and_visualize(checkpoint, files, tmp_path, capsys):
    data = ["--dataset", "tacos", "--data-dir", files["tacos"], "--features", files["features_h5"]]
    code, out, err = run(["evaluate", "--checkpoint", checkpoint, *data, "--protocol", "all"], capsys)
    assert code == 0 and "[2dtan]" in out and "[csmgan]" in out
    png = tmp_path / "moments.png"
    code, out, err = run(["visualize", "--checkpoint", checkpoint, *data, "--output", str(png), "--num", "2"], capsys)
    assert code == 0, err
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("case", ["missing_ckpt", "corrupt_ckpt", "wrong_dim", "missing_ids", "empty_query",
                                  "missing_dir", "bad_json", "resume_other_config", "predict_dim", "predict_nan"])
def test_errors_are_one_line(case, checkpoint, files, tmp_path, capsys):
    tacos = ["--dataset", "tacos", "--data-dir", files["tacos"]]
    if case == "missing_ckpt":
        argv, msg = ["evaluate", "--checkpoint", str(tmp_path / "x.pt")], "checkpoint not found"
    elif case == "corrupt_ckpt":
        (tmp_path / "c.pt").write_bytes(b"junk")
        argv, msg = ["evaluate", "--checkpoint", str(tmp_path / "c.pt")], "not a readable checkpoint"
    elif case == "wrong_dim":
        np.save(tmp_path / "syn_test_00000.npy", np.zeros((5, 7), np.float32))
        import h5py
        with h5py.File(tmp_path / "f.h5", "w") as f:
            for vid in json.load(open(os.path.join(files["tacos"], "test.json"))):
                f.create_dataset(vid, data=np.zeros((5, 7), np.float32))
        argv, msg = ["evaluate", "--checkpoint", checkpoint, *tacos, "--features", str(tmp_path / "f.h5")], \
            "feature dim 7, config expects 32"
    elif case == "missing_ids":
        import h5py
        with h5py.File(tmp_path / "f.h5", "w") as f:
            f.create_dataset("other", data=np.zeros((5, 32), np.float32))
        argv, msg = ["evaluate", "--checkpoint", checkpoint, *tacos, "--features", str(tmp_path / "f.h5")], \
            "annotation ids missing (first: 'syn_test_00000')"
    elif case == "empty_query":
        argv, msg = ["predict", "--checkpoint", checkpoint, "--features", files["video"], "--duration", "5",
                     "--query", "  "], "has no words"
    elif case == "missing_dir":
        argv, msg = ["train", "--dataset", "activitynet", "--data-dir", str(tmp_path / "no"), "--features", "x",
                     "--out", str(tmp_path)], "data directory not found"
    elif case == "bad_json":
        (tmp_path / "test.json").write_text("{oops")
        argv, msg = ["evaluate", "--checkpoint", checkpoint, "--dataset", "tacos", "--data-dir", str(tmp_path),
                     "--features", files["features_h5"]], "is not valid JSON"
    elif case == "resume_other_config":
        run_dir = os.path.dirname(checkpoint)
        # GloVe vectors of another dimension give a model of another word_dim
        argv = ["train", *tacos, "--features", files["features_h5"], "--out", run_dir, "--resume", "--preset",
                "synthetic", "--quiet", "--glove", _tiny_glove(tmp_path)]
        msg = "comes from another config: word_dim"
    elif case == "predict_nan":
        video = np.zeros((9, 32), np.float32)
        video[2, :3] = np.nan
        np.save(tmp_path / "v.npy", video)
        argv, msg = ["predict", "--checkpoint", checkpoint, "--features", str(tmp_path / "v.npy"), "--duration", "5",
                     "--query", "a door"], "v.npy: 3 non-finite values of 288 (3 NaN)"
    else:
        np.save(tmp_path / "v.npy", np.zeros((9, 5), np.float32))
        argv, msg = ["predict", "--checkpoint", checkpoint, "--features", str(tmp_path / "v.npy"), "--duration", "5",
                     "--query", "a door"], "feature dim 5, config expects 32"
    code, out, err = run(argv, capsys)
    assert code == 1
    assert err.startswith("fian-fast: error:") and msg in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _tiny_glove(tmp_path):
    p = tmp_path / "glove.3d.txt"
    p.write_text("the 0.1 0.2 0.3\nperson 1 2 3\n")
    return str(p)


def test_demo_runs(tmp_path, capsys):
    code, out, err = run(["demo", "--out", str(tmp_path), "--epochs", "1", "--synthetic-size", "8,3,3"], capsys)
    assert code == 0, err
    assert "synthetic test split" in out and "[2dtan]" in out and "[csmgan]" in out


def test_console_script_error_without_traceback(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "fian-fast")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "fian_fast.cli"]
    proc = subprocess.run(cmd + ["evaluate", "--checkpoint", str(tmp_path / "none.pt")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"fian-fast: error: checkpoint not found: {tmp_path / 'none.pt'}"


def test_evaluate_defaults_to_the_checkpoint_dataset(checkpoint, files, capsys):
    code, out, err = run(["evaluate", "--checkpoint", checkpoint, "--data-dir", files["tacos"], "--features",
                          files["features_h5"], "--json"], capsys)
    assert code == 0, err
    assert "R1@0.1" in json.loads(out)["metrics"]  # TACoS thresholds: the checkpoint was trained on tacos


# ------------------------------------------------------------ public files, new-user paths
@pytest.fixture(scope="module")
def dim12(tmp_path_factory):
    root = tmp_path_factory.mktemp("dim12")
    data = make_synthetic(seed=6, num_videos=(8, 3, 3), video_dim=12)
    paths = write_synthetic(data, str(root))
    paths["data"] = data
    return paths


def test_video_dim_follows_the_features_and_max_steps_validates(dim12, tmp_path, capsys):
    data = ["--dataset", "tacos", "--data-dir", dim12["tacos"], "--features", dim12["features_h5"]]
    code, out, err = run(["train", *data, "--out", str(tmp_path), "--max-steps", "1", *TINY], capsys)
    assert code == 0, err
    assert f"features {dim12['features_h5']}: video_dim 12" in err
    assert "trained 0 epochs (1 steps)" in out and "'R1@0.5'" in out     # the stop validated
    from fian_fast.train import load_checkpoint
    best = load_checkpoint(str(tmp_path / "best.pt"))
    assert best["config"]["video_dim"] == 12 and "optimizer" not in best
    code, out, err = run(["train", *data, "--out", str(tmp_path / "b"), "--video-dim", "32", *TINY], capsys)
    assert code == 1 and "feature dim 12, config expects 32" in err and len(err.strip().splitlines()) == 1


def test_qvhighlights_release_files_several_windows(dim12, tmp_path, capsys):
    data = ["--dataset", "lighthouse", "--data-dir", dim12["lighthouse"], "--features", dim12["features_npy"]]
    path = os.path.join(dim12["lighthouse"], "highlight_val_release.jsonl")
    lines = [json.loads(l) for l in open(path)]
    lines[0]["relevant_windows"].append([0.0, 1.0])                # a second window on the first query
    with open(tmp_path / "highlight_val_release.jsonl", "w") as f:
        f.writelines(json.dumps(o) + "\n" for o in lines)
    for name in ("highlight_train_release.jsonl", "highlight_test_release.jsonl"):
        with open(tmp_path / name, "w") as f:
            f.write(open(os.path.join(dim12["lighthouse"], name)).read())
    data[3] = str(tmp_path)
    code, out, err = run(["train", *data, "--out", str(tmp_path / "run"), "--windows", "each", *TINY], capsys)
    assert code == 0, err
    assert "highlight_val_release.jsonl: kept" in err
    assert "1 queries with several windows, 1 beyond the first (scored against the best-matching window)" in err
    code, out, err = run(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), *data], capsys)
    assert code == 0, err
    # the val split by default, under the checkpoint's policy
    assert f"[2dtan] {len(lines)} queries" in out and "highlight_val_release.jsonl" in err
    assert "best-matching window" in err
    code, out, err = run(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), *data, "--split", "test"],
                         capsys)
    assert code == 1 and "use --split val" in err and len(err.strip().splitlines()) == 1


def test_limit_and_skip_missing_features(dim12, tmp_path, capsys):
    import h5py
    data = dim12["data"]
    drop = data.splits["train"][0].video_id
    with h5py.File(tmp_path / "part.h5", "w") as f:
        for vid, feats in data.features.items():
            if vid != drop:
                f.create_dataset(vid, data=feats)
    args = ["--dataset", "activitynet", "--data-dir", dim12["activitynet"], "--features", str(tmp_path / "part.h5")]
    code, out, err = run(["train", *args, "--out", str(tmp_path / "a"), *TINY], capsys)
    assert code == 1 and f"(first: '{drop}')" in err and "--skip-missing-features" in err
    code, out, err = run(["train", *args, "--out", str(tmp_path / "b"), "--skip-missing-features", "--limit", "5",
                          *TINY], capsys)
    assert code == 0, err
    lost = sum(r.video_id == drop for r in data.splits["train"])
    assert f"train.json: kept 5 of {len(data.splits['train'])} queries; dropped {lost} (missing_features: {lost}" in err
    assert "limit:" in err
    code, out, err = run(["train", *args, "--out", str(tmp_path / "c"), "--limit", "0", *TINY], capsys)
    assert code == 1 and "--limit should be >= 1 query, got 0" in err


@pytest.mark.parametrize("case", ["other_dim", "all_nan", "bom_csv"])
def test_broken_feature_and_csv_files(dim12, tmp_path, capsys, case):
    import h5py
    data = dim12["data"]
    if case == "bom_csv":
        folder = tmp_path / "charades"
        folder.mkdir()
        for name in os.listdir(dim12["charades_txt"]):
            text = open(os.path.join(dim12["charades_txt"], name), encoding="utf-8").read()
            bom = "\ufeff" if name.endswith(".csv") else ""
            (folder / name).write_bytes((bom + text).replace("\n", "\r\n").encode("utf-8"))
        argv = ["train", "--dataset", "charades", "--data-dir", str(folder), "--features", dim12["features_h5"],
                "--out", str(tmp_path / "run"), *TINY]
        code, out, err = run(argv, capsys)
        assert code == 0, err
        return
    victim = data.splits["val"][0].video_id
    with h5py.File(tmp_path / "f.h5", "w") as f:
        for vid, feats in data.features.items():
            if vid == victim:
                feats = np.zeros((5, 7), np.float32) if case == "other_dim" else np.full_like(feats, np.nan)
            f.create_dataset(vid, data=feats)
    argv = ["train", "--dataset", "tacos", "--data-dir", dim12["tacos"], "--features", str(tmp_path / "f.h5"),
            "--out", str(tmp_path / "run"), *TINY]
    code, out, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err and lines[-1].startswith("fian-fast: error:")
    assert all("kept" in line or "video_dim" in line for line in lines[:-1])  # the splits' reports before it
    err = lines[-1]
    if case == "other_dim":
        # refused when the split is loaded, before training starts
        assert f"videos differ in feature dimension: 12 (" in err and f"7 (1 videos, e.g. '{victim}')" in err
        assert not os.path.exists(tmp_path / "run" / "log.jsonl")
    else:
        assert f"f.h5: video '{victim}' has " in err and "NaN" in err
