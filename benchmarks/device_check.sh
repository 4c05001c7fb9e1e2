#!/usr/bin/env bash
# One pass on a bare GPU machine (no network; Python, torch, triton, nvcc, pytest-benchmark and
# h5py already installed): build, run the CUDA tests, run the benchmarks, print a short table.
#
#   bash benchmarks/device_check.sh      # logs under $OUT (default /tmp/fian_fast_device_check)
#
# Knobs: PYTHON (interpreter), SKIP_INSTALL=1 (use the build in place), BENCH (what pytest
# benchmarks, default benchmarks/), FIAN_FAST_CUDA_ARCHS (default 9.0), MAX_JOBS.
#
# The whole script ends within 8 minutes: each step gets a time limit from what is left of a
# 465 s budget (keeping time for the steps after it); a step that runs out of time is reported
# as such (pytest is interrupted with SIGINT, so its summary and the speedups are still
# written) and the next step still runs. Exit status 0 when the build, the tests and the
# benchmarks all passed.
set -u
cd "$(dirname "$0")/.."
LOG="${OUT:-${TMPDIR:-/tmp}/fian_fast_device_check}"
mkdir -p "$LOG"
PY="${PYTHON:-python}"
START=$(date +%s)
DEADLINE=$((START + 465))

left() {  # left RESERVE CAP -> seconds for a step: what remains minus RESERVE, at most CAP
    local n=$((DEADLINE - $(date +%s) - $1))
    [ "$n" -gt "$2" ] && n=$2
    [ "$n" -lt 10 ] && n=10
    echo "$n"
}

step() {  # step NAME SECONDS CMD... -> output in $LOG/NAME.log, status in $LOG/NAME.rc
    local name=$1 limit=$2
    shift 2
    local t0=$(date +%s)
    timeout --signal=INT --kill-after=15 "$limit" "$@" >"$LOG/$name.log" 2>&1
    local rc=$?
    echo "$rc" >"$LOG/$name.rc"
    echo "== $name: exit $rc$([ "$rc" = 124 ] && echo ' (time limit)') in $(( $(date +%s) - t0 )) s"
    return "$rc"
}

{
    echo "date:   $(date -u +%FT%TZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
    "$PY" -c "import sys, torch, triton; print('python', sys.version.split()[0], '| torch', torch.__version__, '| triton', triton.__version__, '| cuda', torch.version.cuda)"
    nvcc --version 2>/dev/null | tail -1
} | tee "$LOG/env.txt"

export FIAN_FAST_CUDA_ARCHS="${FIAN_FAST_CUDA_ARCHS:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
if [ "${SKIP_INSTALL:-0}" = 1 ]; then
    echo "== install: skipped (SKIP_INSTALL=1)"
    INSTALL=0
else
    step install "$(left 300 150)" "$PY" -m pip install --no-build-isolation --no-deps -e .
    INSTALL=$?
fi
[ "$INSTALL" = 0 ] || tail -20 "$LOG/install.log"

step tests "$(left 150 200)" "$PY" -m pytest -m cuda tests/ -q -p no:cacheprovider -rfE --durations=10
TESTS=$?

step benchmarks "$(left 10 400)" "$PY" -m pytest ${BENCH:-benchmarks/} --benchmark -q -p no:cacheprovider -rfE \
    --benchmark-json="$LOG/benchmarks.json" --benchmark-columns=median,iqr,rounds
BENCH=$?

echo
echo "== tests (last lines)"
grep -E " in [0-9.]+s( \(|$)" "$LOG/tests.log" | tail -1
grep -E "^(FAILED|ERROR)" "$LOG/tests.log" | head -20
echo "== benchmarks (last lines)"
grep -E " in [0-9.]+s( \(|$)" "$LOG/benchmarks.log" | tail -1
grep -E "^(FAILED|ERROR)" "$LOG/benchmarks.log" | head -20
echo
echo "== speedups (reference time / fast time, same run; from benchmarks/conftest.py)"
"$PY" - "$LOG/benchmarks.log" <<'EOF'
import re, sys
rows, on = [], False
for line in open(sys.argv[1], errors="replace"):
    if "fian_fast speedups" in line:
        on = True
        continue
    m = re.match(r"(.+?)\s{2,}(.+?)\s+ref\s+([\d.]+) ms\s+fast\s+([\d.]+) ms\s+x\s*([\d.inf]+)", line) if on else None
    if m:
        rows.append(m.groups())
if not rows:
    print("(no speedup lines found)")
for name, device, ref, fast, ratio in rows:
    print(f"{name:<48} {device:<26} ref {float(ref):9.3f} ms  fast {float(fast):9.3f} ms  x{ratio:>7}")
EOF
echo "total $(( $(date +%s) - START )) s; logs in $LOG"
[ "$INSTALL" = 0 ] && [ "$TESTS" = 0 ] && [ "$BENCH" = 0 ]
