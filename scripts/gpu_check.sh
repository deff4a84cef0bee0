#!/usr/bin/env bash
# wkvbench's GPU check: one command, at most 8 minutes planned on an H100/H200, everything it finds in $OUT.
#
#   scripts/gpu_check.sh                 # on a machine with a CUDA GPU
#   OUT=/some/dir scripts/gpu_check.sh   # results elsewhere (default ./gpu-check-out)
#   REHEARSE=1 scripts/gpu_check.sh      # the same script on a CPU: tiny sizes, interpreted kernels
#
# $OUT receives at most four files (each well under 16 MiB):
#   summary.md      preflight (versions, implementations and why any is absent, libNVVM, free GPU
#                   memory, clocks), the stages, the headline table at 81.92 s (AST eager fits) and
#                   327.68 s, the training table, verify and launch-sweep summaries -- every number
#                   from this run's files. Rewritten after every stage.
#   verify.csv      `wkvbench verify` of the kernels only a GPU can check (Triton, cupy_cuda,
#                   numba_cuda, audiorwkv_catflip; bfloat16 and float32 up to 16,400 tokens, then
#                   gradients in bfloat16) and the concurrency checks (scripts/gpu_concurrency.py).
#   run.tar.gz      the work directory: run/ and run-fla/ (results.csv, samples.jsonl, env.json,
#                   worker logs), env.json, sweep.csv, stages.tsv and every stage's log.
#   report.tar.gz   `wkvbench report` of run/, if the time allowed.
# The headline table is also printed as the command's last lines.
#
# Each stage runs in the background under `timeout -s INT` with its budget; the script waits for
# it, so an INT/TERM to the script stops the stage at once (the stage keeps what it wrote), then
# summary.md, verify.csv and run.tar.gz are rebuilt. They are also rebuilt after every stage, so a
# KILL (no trap) still leaves what the finished stages found. Every process of the run carries
# WKVBENCH_GPU_CHECK_RUN in its environment; whatever of them is left after a stage is ended.
#
# Time budget (seconds; 480 planned in all, README and tests/test_gpu_check_script.py check it):
#   setup 10 | preflight 20 | verify 90 | verify-grad 45 | concurrency 40 | suite 170 | fla 45
#   | sweep 15 | report 20 | summaries and packing 25 (about 3 s after each stage)
# The kernels' compile report is not run here: it warms nothing used later and is committed from
# a CPU (reports/cpu-checks/kernels_sm90.txt).
#
# Wheels of packages missing from the machine (fla-core) may be put in .whl/; they are installed
# with `pip install --no-index --no-deps --target` into a temporary directory, nothing else.
# GPU_CHECK_STAGES=verify,suite runs only the named stages (tests use it to cut a run short).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/gpu-check-out}
REHEARSE=${REHEARSE:-0}
ONLY=${GPU_CHECK_STAGES:-}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/wkvbench-gpu-check.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
STAGES="$WORK/stages.tsv"
[ -f "$STAGES" ] || : > "$STAGES"
export WKVBENCH_GPU_CHECK_RUN="$WORK"   # the tag every process of this run inherits
export WKVBENCH_REF_CACHE="$WORK/refcache"  # float64 references shared by verify's children

B_SETUP=10 B_PREFLIGHT=20 B_VERIFY=90 B_GRAD=45 B_CONC=40 B_SUITE=170 B_FLA=45 B_SWEEP=15 B_REPORT=20 B_PACK=25
GPU_IMPLS=triton_chunked,triton_chunked_tf32,triton_recurrent,cupy_cuda,numba_cuda,audiorwkv_catflip,triton
GRAD_IMPLS=triton_chunked,triton_recurrent,cupy_cuda,numba_cuda,audiorwkv_catflip

if [ "$REHEARSE" = 1 ]; then
  DEVICE=cpu
  export TRITON_INTERPRET=1 NUMBA_ENABLE_CUDASIM=1  # interpreted kernels, at tiny sizes only
  SCALE=${REHEARSE_BUDGET_SCALE:-6}  # a loaded 2-core machine: the budgets stretched, the plan unchanged
  # interpreted kernels cost seconds per check: their outputs here, their gradients in the suite's
  # training cells; the gradient stage's plumbing with torch_chunked
  VERIFY_ARGS=(--op bi_wkv7 --device cpu --dtype bfloat16 --impl triton_chunked,numba_cuda,torch_chunked)
  GRAD_ARGS=(--device cpu --impl torch_chunked)
  CONC_ARGS=(--device cpu)
  SWEEP_ARGS=(--device cpu --batch 1 --tokens 4 --heads 1 --budget-s 0.01 --min-samples 1 --impls numba_cuda,cupy_cuda)
  SUITE_FLAGS=(--rehearse)
else
  DEVICE=cuda
  SCALE=1
  VERIFY_ARGS=(--op bi_wkv7,bi_selective_scan --device cuda --long --dtype bfloat16,float32 --impl "$GPU_IMPLS"
               --timeout 60)
  GRAD_ARGS=(--device cuda --impl "$GRAD_IMPLS" --timeout 30)
  CONC_ARGS=(--device cuda --budget-s $((B_CONC - 12)))  # the ticket-wait case first: compile and 3 runs
  SWEEP_ARGS=(--device cuda --batch 8,1 --tokens 16384 --heads 12 --budget-s 0.1)
  SUITE_FLAGS=()
fi

FIRST_RC=0
STAGE_PID= STAGE_NAME= STAGE_T0=0 STAGE_BUDGET=0

reap() {  # end every process of this run but this shell (a stage's leftovers, e.g. verify children)
  local p pids=() i
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    if grep -qzxF "WKVBENCH_GPU_CHECK_RUN=$WORK" "/proc/$p/environ" 2>/dev/null; then
      pids+=("$p")
    fi
  done
  [ ${#pids[@]} -eq 0 ] && return 0
  kill -TERM "${pids[@]}" 2>/dev/null
  for i in 1 2 3 4 5 6 7 8 9 10; do
    sleep 0.2
    kill -0 "${pids[@]}" 2>/dev/null || return 0
  done
  kill -KILL "${pids[@]}" 2>/dev/null
  return 0
}

summarize() {  # summary.md from whatever exists now
  "$PY" scripts/gpu_check.py summary "$WORK" "$OUT/summary.md.tmp" 2>> "$WORK/summary.log" \
    && mv "$OUT/summary.md.tmp" "$OUT/summary.md"
  rm -f "$OUT/summary.md.tmp"
}
pack() {  # verify.csv (header only if nothing was verified) and run.tar.gz from whatever exists now
  "$PY" scripts/gpu_check.py merge-verify "$OUT/verify.csv" "$WORK/verify-fwd.csv" "$WORK/verify-grad.csv" \
    "$WORK/concurrency.csv" 2>> "$WORK/summary.log"
  cp "$OUT/verify.csv" "$WORK/verify.csv" 2>/dev/null
  tar czf "$OUT/run.tar.gz.tmp" -C "$WORK" --exclude ./report --exclude ./site --exclude ./refcache . 2>/dev/null \
    && mv "$OUT/run.tar.gz.tmp" "$OUT/run.tar.gz"
  rm -f "$OUT/run.tar.gz.tmp"
}

wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# stage NAME BUDGET CMD...: CMD in the background under `timeout -s INT BUDGET*SCALE` (KILL 5 s
# later), logged, timed, its exit code in stages.tsv; then leftovers ended, summary and pack rebuilt
stage() {
  local name=$1 budget=$2; shift 2
  wanted "$name" || return 0
  local t0=$SECONDS rc limit=$((budget * SCALE))
  echo "== $name (budget ${budget} s)" >&2
  timeout -s INT -k 5 "$limit" "$@" > "$WORK/$name.log" 2>&1 &
  STAGE_PID=$! STAGE_NAME=$name STAGE_T0=$t0 STAGE_BUDGET=$budget
  wait "$STAGE_PID"
  rc=$?
  STAGE_PID=
  printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$((SECONDS - t0))" "$rc" >> "$STAGES"
  [ "$rc" != 0 ] && [ "$FIRST_RC" = 0 ] && FIRST_RC=$rc
  tail -3 "$WORK/$name.log" >&2
  reap
  summarize
  pack
  return 0
}
skip_stage() {  # NAME BUDGET WHY: a stage not run, said so in stages.tsv
  wanted "$1" || return 0
  printf '%s\t%s\t0\tskipped: %s\n' "$1" "$2" "$3" >> "$STAGES"
}

finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$STAGE_PID" ]; then  # cut off mid-stage: stop it, keep what it wrote
    kill -INT "$STAGE_PID" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do kill -0 "$STAGE_PID" 2>/dev/null || break; sleep 0.2; done
    printf '%s\t%s\t%s\tcut off\n' "$STAGE_NAME" "$STAGE_BUDGET" "$((SECONDS - STAGE_T0))" >> "$STAGES"
    [ "$rc" = 0 ] && rc=130
  fi
  reap
  summarize
  pack
  echo "gpu check: $(ls "$OUT" | tr '\n' ' ')-> $OUT" >&2
  "$PY" scripts/gpu_check.py headline "$OUT/summary.md" 2>/dev/null  # the command's last lines
  [ "$rc" = 0 ] && rc=$FIRST_RC
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

# ---- setup: wheels carried in .whl/ (the machine has no network)
if ls .whl/*.whl > /dev/null 2>&1; then
  SITE="$WORK/site"
  stage setup "$B_SETUP" "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl
  [ -d "$SITE" ] && export PYTHONPATH="$PYTHONPATH:$SITE"
fi

# ---- preflight: versions, implementations (and why any is absent), libNVVM, free memory, clocks; env.json
stage preflight "$B_PREFLIGHT" bash -c '"$0" -m wkvbench.cli env > "$1/env.json" & "$0" scripts/gpu_preflight.py --out "$1/preflight.md" --device "$2"; r=$?; wait $! || r=$?; exit $r' "$PY" "$WORK" "$DEVICE"

# ---- verify: the kernels only a GPU can check, most important first; float64 references cached in $WORK
stage verify "$B_VERIFY" "$PY" -m wkvbench.cli verify "${VERIFY_ARGS[@]}" --out "$WORK/verify-fwd.csv" -q
stage verify-grad "$B_GRAD" "$PY" -m wkvbench.cli verify --op bi_wkv7 --dtype bfloat16 --grad "${GRAD_ARGS[@]}" \
  --out "$WORK/verify-grad.csv" -q
stage concurrency "$B_CONC" "$PY" scripts/gpu_concurrency.py --out "$WORK/concurrency.csv" "${CONC_ARGS[@]}"

# ---- the trimmed headline suite, training group first; fla in a stage of its own (it autotunes for minutes)
if wanted suite || wanted fla; then
  "$PY" scripts/gpu_check.py split-suite suites/gpu-check.toml "$WORK/gpu-check.toml" "$WORK/gpu-check-fla.toml" \
    "${SUITE_FLAGS[@]}"
fi
stage suite "$B_SUITE" "$PY" -m wkvbench.cli run "$WORK/gpu-check.toml" --device "$DEVICE" --out "$WORK/run" --no-progress
if [ -f "$WORK/fla.available" ] && [ "$(cat "$WORK/fla.available")" = ok ]; then
  stage fla "$B_FLA" "$PY" -m wkvbench.cli run "$WORK/gpu-check-fla.toml" --device "$DEVICE" --out "$WORK/run-fla" \
    --no-progress
else
  skip_stage fla "$B_FLA" "$(cat "$WORK/fla.available" 2>/dev/null || echo 'preflight did not run')"
fi

# ---- launch configurations of the Bi-WKV7 kernels, each against float64, timed with the harness timer
stage sweep "$B_SWEEP" "$PY" scripts/launch_sweep.py --out "$WORK/sweep.csv" "${SWEEP_ARGS[@]}"

# ---- the report (if the suite wrote anything)
if [ -f "$WORK/run/results.csv" ]; then
  stage report "$B_REPORT" bash -c '"$0" -m wkvbench.cli report "$1/run" -o "$1/report" --no-svg && tar czf "$2/report.tar.gz" -C "$1" report' "$PY" "$WORK" "$OUT"
fi
exit 0
