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
                                  "missing_dir", "bad_json", "resume_other_config", "predict_dim"])
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
