#!/usr/bin/env bash
# One-shot verification on a bare GPU machine (no network; python3 with torch, triton, nvcc,
# ninja, pytest-benchmark and h5py preinstalled), in the order that decides what to do next:
#
#   1 build       pip install --no-index (no network), asserts nvcc, ninja and a fian_fast._C
#                 built with its CUDA kernels; fails loudly otherwise
#   2 ops         the CUDA localization ops against the float64 CPU kernels (window_score at
#                 ActivityNet B = 128, C = 512 with the chunked weight gradient; iou_label,
#                 temporal_nms, decode, pairwise_iou)
#   3 cga         the Triton CGA, bf16 and fp32, forward + backward at TACoS shapes, both directions
#   4 step        the TACoS B = 64 bf16 training step: eager under set_sync_debug_mode("error"),
#                 then captured in a CUDA graph and replayed, against eager steps
#   5 timings     window_score f32 (cuDNN TF32 off) / bf16, labels+NMS+decode, temporal_nms, CGA
#                 TACoS bf16, the training step (reference eager vs fast eager vs CUDA graph)
#   6 profile     the trainer's own TrainStep under torch.profiler
#   7 tests-rest  every other CUDA test (the Triton kernel tests compiled for the GPU)
#   8 compile     optional (COMPILE=1): torch.compile tests and timings, last
#
#   bash benchmarks/device_check.sh             # on the GPU machine
#   bash benchmarks/device_check.sh --dry-run   # anywhere (CI): the same steps in the same order
#                                               # with the same budgets, each replaced by a CPU
#                                               # counterpart; checks that every selected test and
#                                               # benchmark exists
#
# Knobs: PYTHON (default python3), OUT (results folder, default /tmp/fian_fast_device_check),
# BUDGET (seconds for the whole script, default 420), SCALE (every limit times SCALE; default 1,
# 4 in the dry run), COMPILE=1 (run step 8), SKIP_INSTALL=1 (use
# the build in place), FIAN_FAST_CUDA_ARCHS (default 9.0: H100/H200), MAX_JOBS (default: all
# cores), ONLY="NAME ..." (run only these steps), KILL_STEP=NAME (a rehearsal: that step is cut
# when it has written its first figure, or after KILL_AFTER seconds).
#
# Each step has a time limit: its cap, or less when the steps after it need the rest of BUDGET.
# A step that runs out of time gets SIGINT (pytest still prints its summary), SIGKILL 15 s later,
# and the next step runs. Every figure is written to OUT the moment it exists: speedup rows to
# speedups.tsv (by benchmarks/conftest.py, one flushed line per comparison), step results to
# steps.tsv, output to build.log / tests.log / benchmarks.log / profile.txt, so a cut or a crash
# loses nothing measured before it. The last lines printed (and summary.txt) are one table of
# every target with its figure or why it is missing. At most 8 files are written under OUT.
# Exit status 0 when every step that ran passed.
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
BUDGET="${BUDGET:-420}"
# the dry run's CPU counterparts are slower than the GPU steps: there every limit is SCALE times
# the GPU's (the order and the shares stay those of the GPU run)
SCALE="${SCALE:-$([ "$DRY" = 1 ] && echo 4 || echo 1)}"
DEADLINE=$((START + BUDGET * SCALE))
STEPS="$LOG/steps.tsv"
export FIAN_FAST_SPEEDUPS="$LOG/speedups.tsv" PYTHONUNBUFFERED=1
: >"$STEPS"
: >"$FIAN_FAST_SPEEDUPS"
: >"$LOG/summary.txt"
for f in build.log tests.log benchmarks.log profile.txt benchmarks.json; do rm -f "$LOG/$f"; done

PYTEST=("$PY" -m pytest -p no:cacheprovider -q -s -rfEs)

# ---------------------------------------------------------------------------------- selections
TESTS_OPS=(tests/test_cuda_paper_shapes.py::test_window_score_activitynet_b128_c512_against_float64_cpu
           tests/test_window_score.py tests/test_iou_label.py tests/test_temporal_nms.py tests/test_decode.py
           tests/test_pairwise_iou.py)
TESTS_CGA=(tests/test_cga.py)
CGA_PAPER="paper_shapes and shared and (bf16 or fp32)"
TESTS_STEP=(tests/test_cuda_paper_shapes.py::test_tacos_b64_bf16_step_sync_free_and_graph_replay_matches_eager)
# every other file with CUDA tests, the model and training ones first, then any other (found, not
# listed, so that none is left out); the Triton kernel tests run whole (compiled for the GPU)
TESTS_REST=(tests/test_model_fast.py tests/test_train.py tests/test_sync_free.py)
for f in $(grep -l "mark.cuda" tests/test_*.py | sort); do
    case " ${TESTS_OPS[*]} ${TESTS_CGA[*]} ${TESTS_STEP[*]} ${TESTS_REST[*]} " in
        *" $f "*|*" $f::"*) ;;
        *) TESTS_REST+=("$f") ;;
    esac
done
TESTS_KERNELS=(tests/test_cga_kernels.py)
# timings in priority order; torch.compile baselines only in step 8
BENCH_TIMINGS=(
    "benchmarks/test_bench_window_score.py::test_bench_window_score_cuda[f32]"
    "benchmarks/test_bench_window_score.py::test_bench_window_score_cuda[bf16]"
    "benchmarks/test_bench_localization.py::test_bench_labels_nms_decode_cuda"
    "benchmarks/test_bench_step.py::test_bench_train_step_tacos_b64_bf16_cuda[cuda-graphs]"
    "benchmarks/test_bench_step.py::test_bench_train_step_tacos_b64_bf16_cuda[eager]"
    "benchmarks/test_bench_cga.py::test_bench_cga[tacos-words-attend-video-fwdbwd-bf16]"
    "benchmarks/test_bench_cga.py::test_bench_cga[tacos-video-attends-words-fwdbwd-bf16]"
    "benchmarks/test_bench_temporal_nms.py::test_bench_temporal_nms_cuda"
)
BENCH_COMPILE=(
    "benchmarks/test_bench_step.py::test_bench_train_step_tacos_b64_bf16_cuda[compile]"
    "benchmarks/test_bench_cga.py::test_bench_cga[tacos-words-attend-video-fwdbwd-bf16]"
)
# CPU counterparts of the dry run, the same order
BENCH_DRY=(
    "benchmarks/test_bench_temporal_nms.py::test_bench_temporal_nms_cpu"
    "benchmarks/test_bench_localization.py::test_bench_labels_nms_decode_cpu"
    "benchmarks/test_bench_window_score.py::test_bench_window_score_cpu[tacos-32]"
    "benchmarks/test_bench_window_score.py::test_bench_window_score_cpu[activitynet-32]"
)

# Targets of the final table: speedup-row name (substring) | device (cuda / cpu) | target | step
TARGETS="window_score fwd+bwd activitynet B=128 torch.float32|cuda|>= 1.5|timings
window_score fwd+bwd activitynet B=128 torch.bfloat16|cuda|>= 1.5|timings
labels+NMS+decode TACoS B=128|cuda|>= 50|timings
train step tacos B=64 bf16: fast cuda-graphs vs reference eager|cuda|>= 3|timings
train step tacos B=64 bf16: fast eager vs reference eager|cuda|-|timings
cga tacos words-attend-video fwdbwd bf16 vs eager-upcast|cuda|>= 3|timings
cga tacos video-attends-words fwdbwd bf16 vs eager-upcast|cuda|-|timings
cga tacos words-attend-video fwdbwd bf16 vs eager-same|cuda|-|timings
temporal_nms B=128 N=347 (vs reference)|cuda|-|timings
train step tacos B=64 bf16: fast compile vs reference eager|cuda|-|compile
cga tacos words-attend-video fwdbwd bf16 vs compile|cuda|>= 1.3|compile
temporal_nms B=128 N=347 (vs reference)|cpu|-|timings
labels+NMS+decode TACoS B=128|cpu|-|timings"

# ------------------------------------------------------------------------------------- helpers
# Per step: cap (s) and reserve (s kept for the steps after it)
declare -A CAP=([build]=200 [ops]=75 [cga]=75 [step]=90 [timings]=160 [profile]=45 [tests-rest]=200 [compile]=300)
declare -A RESERVE=([build]=200 [ops]=170 [cga]=140 [step]=110 [timings]=40 [profile]=25 [tests-rest]=5
                    [compile]=0)
ORDER=(build ops cga step timings profile tests-rest compile)

limit() {  # limit NAME -> seconds for the step: its cap, or what BUDGET leaves after the reserve
    local name=$1 n
    n=$((DEADLINE - $(date +%s) - RESERVE[$name] * SCALE))
    [ "$n" -gt $((CAP[$name] * SCALE)) ] && n=$((CAP[$name] * SCALE))
    [ "$n" -lt 10 ] && n=10
    if [ "${KILL_STEP:-}" = "$name" ] && [ "${KILL_AFTER:-figure}" != figure ]; then n=$KILL_AFTER; fi
    echo "$n"
}

record() {  # record NAME STATUS SECONDS NOTE -> steps.tsv row, printed
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$STEPS"
    printf '%-11s %-8s %5s s  %s\n' "$1" "$2" "$3" "$4"
}

skipped() {  # skipped NAME WHY
    record "$1" skipped 0 "$2"
}

step() {  # step NAME LOGFILE CMD... -> runs CMD under the step's time limit, appending to LOGFILE
    local name=$1 log=$2
    shift 2
    local lim t0 rc from status note
    lim=$(limit "$name")
    t0=$(date +%s)
    from=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
    printf '\n===== step %s (limit %s s): %s\n' "$name" "$lim" "$*" >>"$log"
    local rehearse=0
    [ "${KILL_STEP:-}" = "$name" ] && [ "${KILL_AFTER:-figure}" = figure ] && rehearse=1
    # rehearsal: the benchmarks interrupt themselves (SIGINT, as a time limit sends) right after
    # writing their first figure, so the figures after it are missing whatever their speed
    FIAN_FAST_INTERRUPT_AFTER_FIGURE=$rehearse timeout --signal=INT --kill-after=15 "$lim" "$@" >>"$log" 2>&1 &
    local pid=$! watcher=""
    if [ "$rehearse" = 1 ]; then
        # and, for a step that writes no figure through benchmarks/conftest.py, from outside
        local rows
        rows=$(wc -l <"$FIAN_FAST_SPEEDUPS")
        (while kill -0 "$pid" 2>/dev/null && [ "$(wc -l <"$FIAN_FAST_SPEEDUPS")" -le "$rows" ]; do sleep 0.2; done
         kill -INT "$pid" 2>/dev/null) &
        watcher=$!
    fi
    wait "$pid"
    rc=$?
    local cut="time limit ${lim} s"
    if [ -n "$watcher" ]; then
        kill "$watcher" 2>/dev/null
        wait "$watcher" 2>/dev/null
        [ "$rc" = 0 ] || { rc=124; cut="rehearsal: interrupted after its first figure"; }
    fi
    note=$(tail -c +"$from" "$log" | grep -E "(passed|failed|errors?|skipped|deselected|warnings?|no tests ran).* in [0-9.]+s" \
        | tail -1 | sed -E 's/=+//g; s/^ +| +$//g')
    case "$rc" in
        0) status=passed ;;
        124|137) status=killed; note="${cut}; ${note:-no pytest summary}" ;;
        *) status=failed; note="exit ${rc}; ${note}" ;;
    esac
    record "$name" "$status" "$(($(date +%s) - t0))" "$note"
    [ "$status" = passed ]
}

table() {  # the closing table: every target with its figure or why it is missing
    "$PY" - "$FIAN_FAST_SPEEDUPS" "$STEPS" "$DRY" <<'EOF'
import os, sys
speedups, steps, dry = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
rows = [line.rstrip("\n").split("\t") for line in open(speedups) if line.strip()]
status = {}
for line in open(steps):
    name, state, seconds, note = (line.rstrip("\n").split("\t") + [""] * 4)[:4]
    status[name] = (state, note)
print(f"{'target':<66} {'device':<26} {'want':>6} {'got':>9}")
for spec in os.environ["TARGETS"].splitlines():
    name, device, want, step = spec.split("|")
    if device == "cpu" and not dry:
        continue
    hits = [r for r in rows if name in r[0] and r[1].startswith("CPU") == (device == "cpu")]
    if hits:
        r = hits[-1]
        ok = "" if want == "-" else ("  ok" if float(r[4]) >= float(want.split()[-1]) else "  BELOW TARGET")
        print(f"{name[:66]:<66} {r[1][:26]:<26} {want:>6} x{float(r[4]):8.2f}{ok}")
        continue
    if device == "cuda" and dry:
        why = "dry run: needs a GPU"
    elif step not in status:
        why = f"step {step} did not run"
    else:
        state, note = status[step]
        if state == "passed":
            why = f"not measured: step {step} passed without it ({note[:50]}; skips in its log)"
        else:
            why = f"step {step} {state}" + (f" ({note[:60]})" if note else "")
    print(f"{name[:66]:<66} {device:<26} {want:>6}   missing: {why}")
print()
for name, (state, note) in status.items():
    print(f"step {name:<11} {state:<8} {note[:90]}")
EOF
}

# -------------------------------------------------------------------------------------- header
{
    echo "date:    $(date -u +%FT%TZ)"
    echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "gpu:     $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo none)"
    "$PY" -c "import sys, torch; print('python: ', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda)"
    "$PY" -c "import triton; print('triton: ', triton.__version__)" 2>/dev/null || echo "triton:  not installed"
    echo "nvcc:    $(command -v nvcc || echo none) $(nvcc --version 2>/dev/null | tail -1)"
    echo "ninja:   $(command -v ninja || echo none) $(ninja --version 2>/dev/null)"
    echo "mode:    $([ "$DRY" = 1 ] && echo 'dry run (CPU counterparts)' || echo GPU)"
    echo "budget:  ${BUDGET} s in all; per step, cap / reserve kept for the steps after it$([ "$SCALE" != 1 ] \
        && echo " (limits here x${SCALE})"):"
    for s in "${ORDER[@]}"; do printf '           %-11s %4s s / %4s s\n' "$s" "${CAP[$s]}" "${RESERVE[$s]}"; done
    [ -n "${KILL_STEP:-}" ] && echo "rehearsal: step ${KILL_STEP} cut after ${KILL_AFTER:-its first figure}"
} | tee -a "$LOG/summary.txt"
echo

export FIAN_FAST_CUDA_ARCHS="${FIAN_FAST_CUDA_ARCHS:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export TARGETS
FAILED=0
BUILT=1
REST=("${TESTS_REST[@]}" "${TESTS_CGA[@]}" "${TESTS_KERNELS[@]}")
REST_K="not compile and not ($CGA_PAPER)"
COMPILE_K="compile or tacos-words-attend-video-fwdbwd-bf16"

selected() {  # selected NAME -> whether ONLY (a list of step names, default all) holds NAME
    [ -z "${ONLY:-}" ] && return 0
    case " $ONLY " in *" $1 "*) return 0 ;; esac
    return 1
}

run() {  # run NAME LOGFILE CMD... -> the step, unless ONLY leaves it out; FAILED=1 when it fails
    if ! selected "$1"; then
        skipped "$1" "not in ONLY"
        return 0
    fi
    step "$@" || FAILED=1
}

collected() {  # collected ARGS... -> how many tests pytest selects
    "${PYTEST[@]}" --collect-only "$@" 2>/dev/null | grep -oE "^[0-9]+(/[0-9]+)? tests? (collected|selected)" \
        | grep -oE "^[0-9]+" | tail -1
}

if [ "$DRY" = 1 ]; then
    # ------------------------------------------------- dry run: CPU counterparts, same order
    run build "$LOG/build.log" "$PY" -c "import fian_fast; assert fian_fast.has_ops(), fian_fast.extension_error(); \
print('fian_fast._C loaded; its CUDA kernels', 'built' if fian_fast.has_cuda_ops() else 'absent')"
    run ops "$LOG/tests.log" "${PYTEST[@]}" -m "not cuda" -x "${TESTS_OPS[@]%%::*}"
    run cga "$LOG/tests.log" "${PYTEST[@]}" -m "not cuda" -x "${TESTS_CGA[@]}" -k "cpu"
    run step "$LOG/benchmarks.log" "${PYTEST[@]}" --benchmark \
        "benchmarks/test_bench_step.py::test_bench_host_reads_per_step_cpu[synthetic]"
    run timings "$LOG/benchmarks.log" "${PYTEST[@]}" --benchmark --benchmark-json="$LOG/benchmarks.json" \
        "${BENCH_DRY[@]}"
    run profile "$LOG/profile.txt" "$PY" benchmarks/profile_step.py --device cpu --steps 1
    # what the GPU run selects exists, and covers every CUDA test
    if selected tests-rest; then
        t0=$(date +%s)
        all=$(collected -m cuda tests/)
        n_ops=$(collected -m cuda "${TESTS_OPS[@]}")
        n_cga=$(collected -m cuda "${TESTS_CGA[@]}" -k "$CGA_PAPER")
        n_step=$(collected -m cuda "${TESTS_STEP[@]}")
        n_rest=$(collected -m cuda "${REST[@]}" -k "$REST_K")
        n_compile=$(collected -m cuda "${REST[@]}" -k "compile")
        n_bench=$(collected --benchmark "${BENCH_TIMINGS[@]}" "${BENCH_COMPILE[@]}")
        covered=$(( ${n_ops:-0} + ${n_cga:-0} + ${n_step:-0} + ${n_rest:-0} + ${n_compile:-0} ))
        n_want=$(printf '%s\n' "${BENCH_TIMINGS[@]}" "${BENCH_COMPILE[@]}" | sort -u | wc -l)
        note="cuda tests: ops ${n_ops:-?} + cga ${n_cga:-?} + step ${n_step:-?} + rest ${n_rest:-?} + compile ${n_compile:-?} = $covered of ${all:-?}; benchmarks ${n_bench:-?} of $n_want"
        if [ -n "$all" ] && [ "$covered" = "$all" ] && [ "${n_cga:-0}" -gt 0 ] && [ "${n_step:-0}" = 1 ] \
            && [ "${n_bench:-0}" = "$n_want" ]; then
            record tests-rest passed $(( $(date +%s) - t0 )) "selections: $note"
        else
            record tests-rest failed $(( $(date +%s) - t0 )) "selections: $note"
            FAILED=1
        fi
    else
        skipped tests-rest "not in ONLY"
    fi
    skipped compile "dry run"
else
    # ---------------------------------------------------------------------------- on the GPU
    missing=""
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || missing="$missing a-visible-GPU"
    command -v nvcc >/dev/null || missing="$missing nvcc"
    command -v ninja >/dev/null || missing="$missing ninja"
    if [ -n "$missing" ]; then
        echo "FATAL: missing:$missing (nothing on the GPU can be built or run)" \
            | tee -a "$LOG/build.log"
        record build failed 0 "missing:$missing"
        FAILED=1; BUILT=0
    elif [ "${SKIP_INSTALL:-0}" = 1 ]; then
        skipped build "SKIP_INSTALL=1"
    else
        step build "$LOG/build.log" "$PY" -m pip install --no-index --no-deps --no-build-isolation -v -e . || {
            FAILED=1; BUILT=0; tail -30 "$LOG/build.log"; }
    fi
    if [ "$BUILT" = 1 ] && ! "$PY" -c "import fian_fast, sys; sys.exit(0 if fian_fast.has_cuda_ops() else \
print('FATAL: fian_fast._C has no usable CUDA kernels:', fian_fast.extension_error() or 'built without CUDA') or 1)" \
        >>"$LOG/build.log" 2>&1; then
        tail -3 "$LOG/build.log"
        record build failed 0 "fian_fast._C lacks its CUDA kernels (see build.log)"
        FAILED=1; BUILT=0
    fi
    if [ "$BUILT" = 1 ]; then
        run ops "$LOG/tests.log" "${PYTEST[@]}" -m cuda "${TESTS_OPS[@]}"
    else
        skipped ops "the build step failed"
    fi
    run cga "$LOG/tests.log" "${PYTEST[@]}" -m cuda "${TESTS_CGA[@]}" -k "$CGA_PAPER"
    if [ "$BUILT" = 1 ]; then
        run step "$LOG/tests.log" "${PYTEST[@]}" -m cuda "${TESTS_STEP[@]}"
        export FIAN_FAST_BENCH_COMPILE=0     # torch.compile baselines wait for step 8
        run timings "$LOG/benchmarks.log" "${PYTEST[@]}" --benchmark \
            --benchmark-json="$LOG/benchmarks.json" --benchmark-columns=median,iqr,rounds "${BENCH_TIMINGS[@]}"
        unset FIAN_FAST_BENCH_COMPILE
        run profile "$LOG/profile.txt" "$PY" benchmarks/profile_step.py --device cuda
    else
        for s in step timings profile; do skipped "$s" "the build step failed"; done
    fi
    run tests-rest "$LOG/tests.log" "${PYTEST[@]}" -m cuda -k "$REST_K" "${REST[@]}"
    if [ "${COMPILE:-0}" = 1 ]; then
        run compile "$LOG/benchmarks.log" "${PYTEST[@]}" --benchmark -m cuda -k "$COMPILE_K" "${REST[@]}" \
            benchmarks/test_bench_step.py benchmarks/test_bench_cga.py
    else
        skipped compile "optional: COMPILE=1"
    fi
fi

{
    echo
    echo "== failures"
    grep -hE "^(FAILED|ERROR)" "$LOG/tests.log" "$LOG/benchmarks.log" 2>/dev/null | head -20
    echo "== profile of one training step"
    grep -A9 "step wall time" "$LOG/profile.txt" 2>/dev/null | head -10
    echo
    echo "== targets (reference time / fast time, same run, same inputs; total $(( $(date +%s) - START )) s, files in $LOG)"
    table
} | tee -a "$LOG/summary.txt"
exit "$FAILED"
