"""benchmarks/device_check.sh keeps what it measured when a step is cut: a rehearsal of its dry
run (CPU counterparts of the GPU steps) in which the timings step is interrupted right after its
first figure. The figure stays in speedups.tsv and in the closing table, the cut step is named
there as the reason for every figure it did not reach, and the steps after it still run."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "device_check.sh")


@pytest.mark.skipif(not os.path.exists("/usr/bin/timeout") and not os.path.exists("/bin/timeout"),
                    reason="needs coreutils timeout")
def test_a_cut_step_keeps_its_figures_and_the_table_is_printed(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, ONLY="build timings profile",
               KILL_STEP="timings", BUDGET="300")
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(["bash", SCRIPT, "--dry-run"], env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 1, out[-3000:] + done.stderr[-2000:]
    steps = {line.split("\t")[0]: line.split("\t")[1:] for line in (tmp_path / "steps.tsv").read_text().splitlines()}
    assert steps["build"][0] == "passed"
    assert steps["timings"][0] == "killed" and "rehearsal" in steps["timings"][2]
    assert steps["profile"][0] == "passed"                         # the step after the cut ran
    assert steps["ops"][0] == "skipped" and steps["compile"][0] == "skipped"
    rows = (tmp_path / "speedups.tsv").read_text().splitlines()
    assert len(rows) == 1                                          # it stopped at its first figure
    first = rows[0].split("\t")
    assert first[0].startswith("temporal_nms") and float(first[4]) > 0
    table = out[out.index("== targets"):]
    assert f"x{float(first[4]):8.2f}" in table                     # the figure measured before the cut
    assert "missing: step timings killed" in table                 # the figures it did not reach
    assert "step timings     killed" in table
    summary = (tmp_path / "summary.txt").read_text()
    assert "== targets" in summary and f"x{float(first[4]):8.2f}" in summary
