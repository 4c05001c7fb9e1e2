#!/usr/bin/env bash
# One-shot verification on a bare GPU machine (no network; python3 with torch, triton, nvcc,
# ninja, pytest-benchmark and h5py preinstalled): build, CUDA tests, GPU benchmarks, a profile of
# one training step, and a short table printed last.
#
#   bash benchmarks/device_check.sh             # on the GPU machine
#   bash benchmarks/device_check.sh --dry-run   # anywhere (CI): no install, GPU steps skipped;
#                                               # checks that every selected test and benchmark
#                                               # exists, runs the profile on the CPU and the table
#                                               # on a CPU benchmark
#
# Knobs: PYTHON (default python3), OUT (log folder, default /tmp/fian_fast_device_check),
# SKIP_INSTALL=1 (use the build in place), BUDGET (seconds for the whole script, default 480),
# FIAN_FAST_CUDA_ARCHS (default 9.0: H100/H200), MAX_JOBS (default: all cores).
#
# Each step gets a time limit from what is left of BUDGET (keeping a reserve for the steps after
# it); a step that runs out of time is interrupted with SIGINT, so pytest still writes its summary
# and the speedups measured so far, and the next step runs. Benchmarks run in priority order, so a
# cut loses the least important. At most 6 files are written under OUT: summary.txt, install.log,
# tests.log, profile.txt, benchmarks.log, benchmarks.json. Exit status 0 when every step passed.
set -u
cd "$(dirname "$0")/.."
DRY=0
case "${1:-}" in
    --dry-run) DRY=1 ;;
    "") ;;
    *) echo "usage: bash benchmarks/device_check.sh [--dry-run]" >&2; exit 2 ;;
esac
LOG="${OUT:-${TMPDIR:-/tmp}/fian_fast_device_check}"
mkdir -p "$LOG"
PY="${PYTHON:-python3}"
START=$(date +%s)
DEADLINE=$((START + ${BUDGET:-480}))
SPEEDUPS=$(mktemp)
STATUS=$(mktemp)
trap 'rm -f "$SPEEDUPS" "$STATUS"' EXIT
export FIAN_FAST_SPEEDUPS="$SPEEDUPS" PYTHONUNBUFFERED=1

# What runs on the GPU. Tests: every cuda-marked test, files in priority order (the compiled
# and graph-captured training steps, slow to compile, last: a time cut loses them first; the dry
# run fails when a file with cuda tests is missing here), and the Triton kernel tests (compiled
# on the GPU there; interpreted on the CPU elsewhere).
TESTS_CUDA=(tests/test_window_score.py tests/test_iou_label.py tests/test_temporal_nms.py tests/test_decode.py
            tests/test_pairwise_iou.py tests/test_cga.py tests/test_model_fast.py tests/test_train.py
            tests/test_sync_free.py)
TESTS_KERNELS=(tests/test_cga_kernels.py)
# Benchmarks in priority order; torch.compile baselines only where a target needs them.
BENCHMARKS=(
    "benchmarks/test_bench_window_score.py::test_bench_window_score_cuda[f32]"
    "benchmarks/test_bench_window_score.py::test_bench_window_score_cuda[bf16]"
    "benchmarks/test_bench_localization.py::test_bench_labels_nms_decode_cuda"
    "benchmarks/test_bench_temporal_nms.py::test_bench_temporal_nms_cuda"
    "benchmarks/test_bench_cga.py::test_bench_cga[tacos-words-attend-video-fwdbwd-bf16]"
    "benchmarks/test_bench_cga.py::test_bench_cga[tacos-video-attends-words-fwdbwd-bf16]"
    "benchmarks/test_bench_cga.py::test_bench_cga[charades-words-attend-video-fwdbwd-bf16]"
    "benchmarks/test_bench_cga.py::test_bench_cga[charades-video-attends-words-fwdbwd-bf16]"
    "benchmarks/test_bench_step.py::test_bench_train_step_tacos_b64_bf16_cuda"
)

left() {  # left RESERVE CAP -> seconds for a step: what remains minus RESERVE, at most CAP
    local n=$((DEADLINE - $(date +%s) - $1))
    [ "$n" -gt "$2" ] && n=$2
    [ "$n" -lt 10 ] && n=10
    echo "$n"
}

step() {  # step NAME LOGFILE SECONDS CMD... -> appends output to LOGFILE, records the status
    local name=$1 log=$2 limit=$3
    shift 3
    local t0
    t0=$(date +%s)
    echo "\$ $*" >>"$log"
    timeout --signal=INT --kill-after=15 "$limit" "$@" >>"$log" 2>&1
    local rc=$?
    local note=""
    [ "$rc" = 124 ] && note=" (time limit ${limit} s)"
    printf '%-22s exit %-3s %4s s%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$note" | tee -a "$STATUS"
    return "$rc"
}

skipped() {  # skipped NAME WHY
    printf '%-22s skipped (%s)\n' "$1" "$2" | tee -a "$STATUS"
}

collected() {  # collected ARGS... -> how many tests pytest selects
    "${PYTEST[@]}" --collect-only "$@" 2>/dev/null | grep -oE "^[0-9]+(/[0-9]+)? tests? collected" | grep -oE "^[0-9]+"
}

last_line() {  # pytest's closing line of a log
    grep -E "(passed|failed|error|skipped|no tests ran|selected).* in [0-9.]+s" "$1" | tail -1
}

: >"$LOG/summary.txt"
{
    echo "date:    $(date -u +%FT%TZ)"
    echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "gpu:     $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo none)"
    "$PY" -c "import sys, torch; print('python: ', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda)"
    "$PY" -c "import triton; print('triton: ', triton.__version__)" 2>/dev/null || echo "triton:  not installed"
    echo "nvcc:    $(nvcc --version 2>/dev/null | tail -1 || echo none)"
    echo "ninja:   $(command -v ninja || echo none) $(ninja --version 2>/dev/null)"
    echo "mode:    $([ "$DRY" = 1 ] && echo 'dry run (CPU)' || echo GPU)"
} | tee -a "$LOG/summary.txt"
echo

export FIAN_FAST_CUDA_ARCHS="${FIAN_FAST_CUDA_ARCHS:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
FAILED=0
PYTEST=("$PY" -m pytest -p no:cacheprovider -q -rfE)

if [ "$DRY" = 1 ]; then
    skipped install "dry run"
    step tests-exist "$LOG/tests.log" "$(left 120 120)" "${PYTEST[@]}" --collect-only -m cuda "${TESTS_CUDA[@]}" \
        "${TESTS_KERNELS[@]}" || FAILED=1
    all_cuda=$(collected -m cuda tests/)
    listed_cuda=$(collected -m cuda "${TESTS_CUDA[@]}")
    if [ -n "$all_cuda" ] && [ "$all_cuda" = "$listed_cuda" ]; then
        printf '%-22s %s\n' tests-listed "all $all_cuda cuda tests are in TESTS_CUDA" | tee -a "$STATUS"
    else
        printf '%-22s %s\n' tests-listed "FAILED: tests/ has ${all_cuda:-?} cuda tests, TESTS_CUDA ${listed_cuda:-?}" \
            | tee -a "$STATUS"
        FAILED=1
    fi
    skipped tests "dry run: CUDA tests need a GPU"
    step profile "$LOG/profile.txt" "$(left 60 120)" "$PY" benchmarks/profile_step.py --device cpu --steps 1 || FAILED=1
    step benchmarks-exist "$LOG/benchmarks.log" "$(left 30 120)" "${PYTEST[@]}" --collect-only --benchmark \
        "${BENCHMARKS[@]}" || FAILED=1
    # a CPU benchmark stands in for the GPU ones, so that the table below reads real output
    step benchmarks-cpu "$LOG/benchmarks.log" "$(left 10 120)" "${PYTEST[@]}" --benchmark \
        --benchmark-json="$LOG/benchmarks.json" benchmarks/test_bench_temporal_nms.py::test_bench_temporal_nms_cpu \
        || FAILED=1
    skipped benchmarks "dry run: GPU benchmarks need a GPU"
else
    if [ "${SKIP_INSTALL:-0}" = 1 ]; then
        skipped install "SKIP_INSTALL=1"
    else
        step install "$LOG/install.log" "$(left 270 180)" "$PY" -m pip install --no-build-isolation --no-deps -e . \
            || { FAILED=1; tail -20 "$LOG/install.log"; }
    fi
    step tests-cuda "$LOG/tests.log" "$(left 270 150)" "${PYTEST[@]}" -m cuda "${TESTS_CUDA[@]}" --durations=5 \
        || FAILED=1
    step tests-kernels "$LOG/tests.log" "$(left 200 90)" "${PYTEST[@]}" "${TESTS_KERNELS[@]}" --durations=5 || FAILED=1
    step profile "$LOG/profile.txt" "$(left 150 60)" "$PY" benchmarks/profile_step.py --device cuda || FAILED=1
    step benchmarks "$LOG/benchmarks.log" "$(left 5 400)" "${PYTEST[@]}" --benchmark \
        --benchmark-json="$LOG/benchmarks.json" --benchmark-columns=median,iqr,rounds "${BENCHMARKS[@]}" || FAILED=1
fi

{
    echo
    echo "== failures"
    grep -hE "^(FAILED|ERROR)" "$LOG/tests.log" "$LOG/benchmarks.log" 2>/dev/null | head -20
    echo "== profile of one training step"
    grep -A9 "step wall time" "$LOG/profile.txt" 2>/dev/null | head -10
    echo
    echo "== summary"
    cat "$STATUS"
    for f in tests benchmarks; do
        [ -f "$LOG/$f.log" ] && echo "$f: $(last_line "$LOG/$f.log")"
    done
    echo
    echo "== speedups (reference time / fast time, same run, same inputs)"
    "$PY" - "$SPEEDUPS" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
if not rows:
    print("(none measured)")
for name, device, ref, fast, ratio in rows:
    print(f"{name[:64]:<64} {device[:28]:<28} ref {float(ref):9.3f} ms  fast {float(fast):9.3f} ms  x{float(ratio):7.2f}")
EOF
    echo "total $(( $(date +%s) - START )) s; logs in $LOG"
} | tee -a "$LOG/summary.txt"
exit "$FAILED"
