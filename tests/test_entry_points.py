"""Every entry point works in a fresh process: ``fian-fast train --compile``, ``evaluate`` and
``predict``, each started from nothing in a subprocess, so that no registry, cache or compiled
kernel warmed by an earlier call in the test process can hide a failure.

``train --compile`` runs with the Triton CGA in the compiled step as it runs on CUDA
(``FIAN_FAST_CGA=triton``; on the CPU under ``TRITON_INTERPRET=1``): the very first call of the
Triton ops happens inside ``torch.compile(fullgraph=True)``.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

EXE = os.path.join(os.path.dirname(sys.executable), "fian-fast")
SIZES = ["--synthetic-size", "24,8,8", "--threads", "1"]


def fresh(args, timeout=900, **env):
    """Run ``fian-fast ARGS`` in a new process; returns the completed process (output as text)."""
    environment = dict(os.environ, **env)
    for key in ("TRITON_INTERPRET", "FIAN_FAST_CGA"):
        if key not in env:
            environment.pop(key, None)
    done = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, env=environment)
    assert done.returncode == 0, f"fian-fast {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory):
    """A short ``train --compile`` on the synthetic data, Triton CGA included."""
    out = tmp_path_factory.mktemp("compiled_run")
    done = fresh(["train", "--dataset", "synthetic", *SIZES, "--out", str(out), "--compile", "--max-steps", "2",
                  "--batch-size", "4", "--quiet"], TRITON_INTERPRET="1", FIAN_FAST_CGA="triton")
    return out, done


def test_train_compile_in_a_fresh_process_with_the_triton_cga(compiled_run):
    out, _ = compiled_run
    log = {r["event"]: r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())}
    assert log["end"]["steps"] == 2
    assert log["eval"]["step"] == 2 and np.isfinite(log["eval"]["metrics"]["mIoU"])
    assert (out / "best.pt").exists() and (out / "last.pt").exists()


def test_evaluate_in_a_fresh_process(compiled_run):
    out, _ = compiled_run
    done = fresh(["evaluate", "--checkpoint", str(out / "best.pt"), *SIZES, "--json"])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["protocol"] == "2dtan" and result["num_queries"] >= 8      # 8 test videos, 2-3 queries each
    assert 0.0 <= result["metrics"]["R1@0.5"] <= 100.0 and np.isfinite(result["metrics"]["mIoU"])


def test_predict_in_a_fresh_process(compiled_run, tmp_path):
    out, _ = compiled_run
    features = tmp_path / "video.npy"
    np.save(features, np.random.default_rng(0).standard_normal((40, 32)).astype(np.float32))
    done = fresh(["predict", "--checkpoint", str(out / "best.pt"), "--features", str(features), "--query",
                  "the person opens the door.", "--duration", "20", "--json"])
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    segments = answer["segments"]
    assert len(segments) == 5
    assert all(0.0 <= s["start"] <= s["end"] <= 20.0 for s in segments)
    assert [s["score"] for s in segments] == sorted((s["score"] for s in segments), reverse=True)
