#!/usr/bin/env bash
# tools/gpu_check.sh: the prepared GPU validation run (issue 16). In at most 9 minutes it prints the
# versions, installs the wheels carried in .whl/, builds posetr's CUDA kernels in place, runs every
# CUDA-marked test, runs every CUDA kernel forward and backward under compute-sanitizer memcheck and
# racecheck (python -m posetr.tools.cuda_smoke), times the kernels and the training steps
# (python -m posetr bench --device cuda --json), and prints a summary table last.
#
# On the device machine (the workplace's `run` tool), from the root of the session's checkout:
#   1. Once, on the developer machine, fetch the one package the device image lacks (0.4 MB):
#        python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#          --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#          -d .whl pycocotools==2.0.11
#      (.whl/ is in .gitignore, so `carry` must name it.)
#   2. run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=600)
#      The reply's output_tail ends with the summary; the files come back from $OUT (8 at most):
#      summary.md gpu_check.log build.log tests.log memcheck.log racecheck.log bench.log bench.json
#   3. A rerun on the still-warm machine keeps the build (ninja rebuilds only what changed), e.g.
#        run(command="bash tools/gpu_check.sh --steps wheels,build,tests", carry=[".whl"], timeout_s=600)
#
# Usage: bash tools/gpu_check.sh [--dry-run] [--steps LIST]
#   --dry-run  print every step's command without a GPU, then check what can be checked here: the
#              smoke driver's calls on the CPU kernels, the bench's JSON (schema posetr-bench/1) from
#              its --quick cases on the CPU, the summary rendered from it. Exit 0 when those pass.
#   --steps    comma-separated subset of versions,wheels,build,tests,memcheck,racecheck,bench (default all)
# Environment: OUT (default outputs/gpu_check), PYTHON (python3), GPU_CHECK_BUDGET_S (540: the deadline of
#   the whole run; each step's time box is cut to what is left of it), MAX_JOBS (16), BENCH_REPEATS (20),
#   GPU_CHECK_SANITIZER_ARGS (extra compute-sanitizer flags, e.g. "--kernel-name kns=lap_kernel").
# Exit status: 0 when every step that ran passed, 1 otherwise. A failed build skips the steps after it;
# any other failed step does not stop the ones after it.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DRY=0
ALL_STEPS=versions,wheels,build,tests,memcheck,racecheck,bench
STEPS=$ALL_STEPS
while (($#)); do
  case $1 in
    --dry-run) DRY=1 ;;
    --steps) STEPS=${2:?--steps needs a list}; shift ;;
    --steps=*) STEPS=${1#--steps=} ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
for step in ${STEPS//,/ }; do
  [[ ",$ALL_STEPS," == *",$step,"* ]] || { echo "gpu_check.sh: unknown step $step (steps: $ALL_STEPS)" >&2; exit 2; }
done

OUT=${OUT:-$REPO/outputs/gpu_check}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SITE=/tmp/gpu_check_site  # where the carried wheels are installed
LOG=$OUT/gpu_check.log
# A reused OUT (the default one, here) must not show an earlier run's files.
rm -f "$OUT"/{summary.md,gpu_check.log,build.log,tests.log,memcheck.log,racecheck.log,bench.log,bench.json,smoke_cpu.log}
DEADLINE=$((SECONDS + ${GPU_CHECK_BUDGET_S:-540}))
RESERVE=10  # seconds kept for the summary
FAILED=0
BUILD_FAILED=0
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# The interpreter's bin folder first: its ninja (pip's) is what torch's extension build looks for;
# without ninja it would compile the 12 sources one after another.
PATH="$($PY -c 'import os, sys; print(os.path.dirname(sys.executable))' 2>/dev/null || echo /usr/bin):$PATH"
printf 'step\tstatus\tseconds\tlog\tnote\n' > "$WORK/steps.tsv"

say() { printf '%s\n' "$*" | tee -a "$LOG"; }
want() { [[ ",$STEPS," == *",$1,"* ]]; }
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$WORK/steps.tsv"; }

# run_step NAME BOX_S LOGFILE COMMAND: runs the bash string COMMAND under `timeout` (BOX_S, cut to the
# time left before the deadline), its output in LOGFILE; records the step's status; on failure prints
# the log's tail. Returns the command's exit status (0 in a dry run, which only prints COMMAND).
run_step() {
  local name=$1 box=$2 log=$3 cmd=$4 left t0 rc status shown
  want "$name" || return 0
  shown=$(basename "$log")
  [[ $log == "$WORK"/* ]] && shown=gpu_check.log  # short outputs are printed into gpu_check.log
  left=$((DEADLINE - SECONDS - RESERVE))
  ((left < box)) && box=$left
  say ""
  say "==> $name (time box ${box}s): $cmd"
  if ((DRY)); then
    record "$name" "dry-run" - "" ""
    return 0
  fi
  if ((BUILD_FAILED)); then
    record "$name" "skipped: the build failed" - "" ""
    say "<== $name: skipped (the build failed)"
    return 1
  fi
  if ((box < 5)); then
    record "$name" "skipped: no time left" - "" ""
    say "<== $name: skipped (no time left of the ${GPU_CHECK_BUDGET_S:-540}s budget)"
    FAILED=1
    return 1
  fi
  t0=$SECONDS
  timeout --kill-after=10 "$box" bash -c "$cmd" > "$log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT after ${box}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  ((rc)) && FAILED=1
  record "$name" "$status" "$((SECONDS - t0))" "$shown" "$(step_note "$name" "$log")"
  say "<== $name: $status in $((SECONDS - t0))s (log: $shown)"
  if ((rc)); then
    say "--- last 40 lines of $shown:"
    tail -n 40 "$log" | tee -a "$LOG"
  fi
  return $rc
}

# The line of a step's log worth a place in the summary table.
step_note() {
  local pattern
  case $1 in
    build) pattern='^posetr\._C: |error' ;;
    tests) pattern='[0-9]+ (passed|failed|error|skipped|deselected)|no tests ran' ;;
    memcheck|racecheck) pattern='ERROR SUMMARY|RACECHECK SUMMARY|^cuda_smoke on' ;;
    wheels) pattern='^installed|^no wheels|^pycocotools' ;;
    bench) pattern='^posetr bench: ' ;;
    *) return 0 ;;
  esac
  grep -E "$pattern" "$2" 2>/dev/null | tail -n 2 | tr '\t\n' '  ' | cut -c1-200
}

# compute-sanitizer flags; optional ones only where this compute-sanitizer knows them. API errors
# are not reported: torch probes the driver with calls that fail by design, and a posetr launch that
# fails raises in the smoke driver (C10_CUDA_KERNEL_LAUNCH_CHECK) and fails the step anyway.
sanitizer_flags() {
  local flags="--tool $1 --error-exitcode 99" help
  help=$(compute-sanitizer --help 2>&1 || true)
  if ((DRY)) || grep -q -- '--report-api-errors' <<< "$help"; then flags+=" --report-api-errors no"; fi
  if ((DRY)) || grep -q -- '--print-limit' <<< "$help"; then flags+=" --print-limit 100"; fi
  echo "$flags ${GPU_CHECK_SANITIZER_ARGS:-}"
}

say "gpu_check.sh $(date -u +%FT%TZ) on ${HOSTNAME:-?}, repo $REPO, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( ((DRY)) && echo ', DRY RUN')"
say "OUT=$OUT, steps: $STEPS, budget ${GPU_CHECK_BUDGET_S:-540}s"

# 1. Versions: GPU, driver, nvcc, compiler, python, torch; Python.h (the build needs it).
VERSIONS_CMD="nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader || echo 'nvidia-smi: none'
nvcc --version | tail -n 2 || echo 'nvcc: none'
gcc --version | head -n 1 || echo 'gcc: none'
compute-sanitizer --version | tail -n 1 || echo 'compute-sanitizer: none'
ninja --version || echo 'ninja: none'
$PY - <<'PY'
import os, platform, sys, sysconfig
include = sysconfig.get_paths()['include']
print('python', platform.python_version(), sys.executable, '| Python.h', 'found' if os.path.isfile(os.path.join(include, 'Python.h')) else 'MISSING in ' + include)
import torch
cuda = torch.cuda.is_available()
print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version() if cuda else None,
      '| GPUs', torch.cuda.device_count(), '|', ', '.join(f'{torch.cuda.get_device_name(i)} (sm_{\"\".join(map(str, torch.cuda.get_device_capability(i)))})' for i in range(torch.cuda.device_count())))
PY"
if want versions; then
  run_step versions 30 "$WORK/versions.txt" "$VERSIONS_CMD"
  [[ -f $WORK/versions.txt ]] && tee -a "$LOG" < "$WORK/versions.txt"
fi

# 2. Wheels the device lacks, from .whl/, into $SITE on PYTHONPATH.
WHEELS_CMD="shopt -s nullglob; wheels=(.whl/*.whl)
if ((\${#wheels[@]})); then $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE \"\${wheels[@]}\" && echo \"installed \${wheels[*]##*/} into $SITE\" || exit 1; else echo 'no wheels in .whl/'; fi
PYTHONPATH=$SITE:\$PYTHONPATH $PY -c 'import pycocotools; print(\"pycocotools\", pycocotools.__file__)'"
if want wheels; then
  run_step wheels 30 "$WORK/wheels.txt" "$WHEELS_CMD"
  [[ -f $WORK/wheels.txt ]] && tee -a "$LOG" < "$WORK/wheels.txt"
  if ((DRY)); then
    shopt -s nullglob
    wheels=(.whl/*.whl)
    say "    carried wheels: ${wheels[*]:-none} ($(du -cb "${wheels[@]}" /dev/null 2>/dev/null | tail -n 1 | cut -f1) bytes; carry limit 64 MiB)"
    shopt -u nullglob
  fi
fi
[[ -d $SITE ]] && export PYTHONPATH="$SITE:$PYTHONPATH"

# 3. Build in place with the CUDA kernels (sm_90), failing fast with the compiler's message.
# Then the extension must load with its CUDA kernels (an ABI mismatch shows as the import error).
BUILD_CMD="FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-16} $PY setup.py build_ext --inplace && $PY -c 'import sys, posetr._ext as e; print(\"posetr._C:\", e._C.__file__ if e.HAS_EXTENSION else e._IMPORT_ERROR, \"| CUDA kernels:\", e.HAS_CUDA_KERNELS); sys.exit(0 if e.HAS_CUDA_KERNELS else 1)'"
if want build && ! run_step build 270 "$OUT/build.log" "$BUILD_CMD" && ((!DRY)); then
  BUILD_FAILED=1
  say "--- compiler errors in build.log:"
  grep -n -E 'error|Error' "$OUT/build.log" | head -n 20 | tee -a "$LOG"
fi

# 4. Every CUDA-marked test (pytest-xdist spreads them over 4 processes where it is installed).
XDIST=$($PY -c 'import xdist' 2>/dev/null && echo '-n 4')
# conftest.py skips CUDA tests without a GPU: make "torch sees no GPU" a failure, not 140 skips.
run_step tests 150 "$OUT/tests.log" \
  "$PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else \"torch sees no CUDA device\")' && $PY -m pytest -m cuda -q -rfEs -p no:cacheprovider --continue-on-collection-errors $XDIST tests"

# 5. Every CUDA kernel forward and backward under compute-sanitizer. No caching allocator for
#    memcheck: each tensor is its own cudaMalloc, so an access past its end is caught.
run_step memcheck 120 "$OUT/memcheck.log" \
  "PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer $(sanitizer_flags memcheck) $PY -m posetr.tools.cuda_smoke"
run_step racecheck 120 "$OUT/racecheck.log" \
  "compute-sanitizer $(sanitizer_flags racecheck) $PY -m posetr.tools.cuda_smoke --no-compare"

# 6. Timings at the real shapes, as JSON (rewritten after every case: a stopped run keeps its rows).
run_step bench 180 "$OUT/bench.log" \
  "$PY -m posetr bench --device cuda --repeats ${BENCH_REPEATS:-20} --json $OUT/bench.json"

# Dry run: what can be checked without a GPU.
if ((DRY)); then
  dry_check() {  # dry_check NAME LOGFILE COMMAND
    local rc
    say "--- check: $1: $3"
    OMP_NUM_THREADS=1 bash -c "$3" > "$2" 2>&1
    rc=$?
    record "check: $1" "$( ((rc)) && echo "FAILED (exit $rc)" || echo ok)" - "$(basename "$2")" "$(tail -n 1 "$2" | cut -c1-200)"
    if ((rc)); then FAILED=1; tail -n 40 "$2" | tee -a "$LOG"; fi
  }
  dry_check "smoke driver on the CPU kernels" "$OUT/smoke_cpu.log" "$PY -m posetr.tools.cuda_smoke --device cpu"
  dry_check "bench JSON on the CPU (--quick)" "$OUT/bench.log" \
    "$PY -m posetr bench --device cpu --quick --repeats 1 --json $OUT/bench.json"
fi

# Summary: versions, one row per step, the bench table (rendered without torch), printed last.
{
  echo "# posetr GPU check, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( ((DRY)) && echo ' (dry run)')"
  echo
  if [[ -s $WORK/versions.txt ]]; then sed 's/^/    /' "$WORK/versions.txt"; echo; fi
  echo "| step | status | seconds | log | note |"
  echo "|---|---|---:|---|---|"
  tail -n +2 "$WORK/steps.tsv" | while IFS=$'\t' read -r step status secs logname note; do
    echo "| $step | $status | $secs | $logname | ${note//|//} |"
  done
  echo
  if [[ -s $OUT/bench.json ]]; then
    $PY posetr/profile/report.py "$OUT/bench.json" 2>&1 || FAILED=1
  else
    echo "(no bench.json)"
  fi
} > "$OUT/summary.md" 2>&1
grep -q '^report.py: error' "$OUT/summary.md" && FAILED=1
say ""
say "==== summary ($OUT/summary.md), $SECONDS s in all"
tee -a "$LOG" < "$OUT/summary.md"
exit $((FAILED ? 1 : 0))
