#!/usr/bin/env bash
# wkvbench's GPU check: one command, about 8 minutes on an H100/H200, everything it finds in $OUT.
#
#   scripts/gpu_check.sh                 # on a machine with a CUDA GPU
#   OUT=/some/dir scripts/gpu_check.sh   # results elsewhere (default ./gpu-check-out)
#   REHEARSE=1 scripts/gpu_check.sh      # the same script on a CPU, sizes scaled down (< 3 min)
#
# $OUT receives at most four files (each well under 16 MiB):
#   summary.md      the headline table (best Bi-WKV7 vs AST eager fp16, best SDPA, the Mamba scan,
#                   fla_chunk if installed, % of copy bandwidth) and verify/sweep summaries,
#                   every number from this run's files;
#   verify.csv      `wkvbench verify` of the Bi-WKV7 implementations, bfloat16 and float32,
#                   up to 16,400 tokens at A-RWKV-B width (--long), and their gradients in
#                   bfloat16 (--grad);
#   run.tar.gz      the work directory: run/ (results.csv, samples.jsonl, env.json, worker logs),
#                   env.json, kernels.txt, sweep.csv, stages.tsv and every stage's log;
#   report.tar.gz   `wkvbench report` of run/, if the time allowed.
# Each stage runs under `timeout -s INT` with the budget below (a hung cell costs at most
# max_cell_s = 60 s, suites/gpu-check.toml); a stage that is cut off keeps what it wrote (results
# rows are appended as cells finish). run.tar.gz is rebuilt after every stage, summary.md after
# the suite, and both at exit (also on INT/TERM), so a stop at any point leaves what was done.
#
# Time budget (seconds; ~8 minutes in all):
#   setup 15 | env 20 | kernels 45 | verify 150 (50 per dtype, 50 gradients) | suite 210 | sweep 30
#   | report 35 | pack 15
#
# Wheels of packages missing from the machine (fla-core) may be put in .whl/; they are installed
# with `pip install --no-index --no-deps --target` into a temporary directory, nothing else.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/gpu-check-out}
REHEARSE=${REHEARSE:-0}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/wkvbench-gpu-check.XXXXXX")}
mkdir -p "$WORK"
STAGES="$WORK/stages.tsv"
: > "$STAGES"

B_SETUP=15 B_ENV=20 B_KERNELS=45 B_VERIFY=50 B_SUITE=210 B_SWEEP=30 B_REPORT=35

if [ "$REHEARSE" = 1 ]; then
  DEVICE=cpu
  VERIFY_ARGS=(--device cpu --impl torch_chunked)  # interpreted kernels: minutes per shape on 2 cores
  VERIFY_GRAD_ARGS=(--device cpu --impl torch_chunked)
  KERNEL_MODULES=(wkvbench.impls.bi_wkv7_torch)  # no kernels to compile: the stage's plumbing only
  SWEEP_ARGS=(--device cpu --batch 1 --tokens 4 --heads 1 --budget-s 0.01 --min-samples 1 --impls numba_cuda,cupy_cuda)
  SWEEP_PREFIX=(env TRITON_INTERPRET=1 NUMBA_ENABLE_CUDASIM=1)
  "$PY" scripts/gpu_check.py rehearse-suite suites/gpu-check.toml "$WORK/gpu-check.toml"
  SUITE="$WORK/gpu-check.toml"
else
  DEVICE=cuda
  VERIFY_ARGS=(--device cuda --long)
  VERIFY_GRAD_ARGS=(--device cuda)
  KERNEL_MODULES=(wkvbench.impls.bi_wkv7_triton wkvbench.impls.bi_wkv7_cupy wkvbench.impls.bi_wkv7_numba
                  wkvbench.impls.bi_wkv7_catflip wkvbench.impls.bi_selective_scan_triton)
  SWEEP_ARGS=(--device cuda --batch 8,1 --tokens 16384 --heads 12 --budget-s 0.2)
  SWEEP_PREFIX=()
  SUITE=suites/gpu-check.toml
fi

# stage NAME BUDGET CMD...: run CMD under `timeout -s INT BUDGET` (KILL 10 s later), log it, time it
stage() {
  local name=$1 budget=$2; shift 2
  local t0=$SECONDS rc
  echo "== $name (budget ${budget} s)" >&2
  timeout -s INT -k 10 "$budget" "$@" > "$WORK/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$((SECONDS - t0))" "$rc" >> "$STAGES"
  tail -3 "$WORK/$name.log" >&2
  return 0
}

summarize() {  # summary.md from whatever exists now
  "$PY" scripts/gpu_check.py summary "$WORK" "$OUT/summary.md.tmp" 2> "$WORK/summary.log" \
    && mv "$OUT/summary.md.tmp" "$OUT/summary.md"
  rm -f "$OUT/summary.md.tmp"
}
pack() {  # verify.csv and run.tar.gz from whatever exists now
  [ -f "$WORK/verify.csv" ] && cp "$WORK/verify.csv" "$OUT/verify.csv"
  tar czf "$OUT/run.tar.gz.tmp" -C "$WORK" --exclude ./report --exclude ./site . 2>/dev/null \
    && mv "$OUT/run.tar.gz.tmp" "$OUT/run.tar.gz"
  rm -f "$OUT/run.tar.gz.tmp"
}
finish() {
  trap - EXIT INT TERM
  summarize
  pack
  echo "gpu check: $(ls "$OUT" | tr '\n' ' ')-> $OUT" >&2
}
trap finish EXIT
trap 'exit 130' INT TERM

# ---- setup: wheels carried in .whl/ (the machine has no network)
if ls .whl/*.whl > /dev/null 2>&1; then
  SITE="$WORK/site"
  stage setup "$B_SETUP" "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:$SITE"
fi

# ---- env and the kernels' compile report (one process per module, in parallel)
stage env "$B_ENV" bash -c '"$0" -m wkvbench.cli env > "$1"' "$PY" "$WORK/env.json"
t0=$SECONDS
for m in "${KERNEL_MODULES[@]}"; do
  timeout -s INT -k 5 "$B_KERNELS" "$PY" -m wkvbench.cli kernels --module "$m" > "$WORK/kernels-$m.txt" 2>&1 &
done
wait
cat "$WORK"/kernels-*.txt > "$WORK/kernels.txt" 2>/dev/null
rm -f "$WORK"/kernels-*.txt
printf '%s\t%s\t%s\t%s\n' kernels "$B_KERNELS" "$((SECONDS - t0))" - >> "$STAGES"
pack

# ---- verify: Bi-WKV7 in bfloat16 and float32 (one table per dtype, so a cut-off keeps the first)
for dt in bfloat16 float32; do
  stage "verify-$dt" "$B_VERIFY" "$PY" -m wkvbench.cli verify --op bi_wkv7 --dtype "$dt" "${VERIFY_ARGS[@]}" \
    --out "$WORK/verify-$dt.csv" -q
done
stage verify-grad "$B_VERIFY" "$PY" -m wkvbench.cli verify --op bi_wkv7 --dtype bfloat16 --grad "${VERIFY_GRAD_ARGS[@]}" \
  --out "$WORK/verify-grad.csv" -q
"$PY" scripts/gpu_check.py merge-csv "$WORK/verify.csv" "$WORK/verify-bfloat16.csv" "$WORK/verify-float32.csv" \
  "$WORK/verify-grad.csv"
pack

# ---- the trimmed headline suite (rows appended as cells finish)
stage suite "$B_SUITE" "$PY" -m wkvbench.cli run "$SUITE" --device "$DEVICE" --out "$WORK/run" --no-progress
summarize
pack

# ---- launch configurations of the Bi-WKV7 kernels, timed with the harness timer
stage sweep "$B_SWEEP" "${SWEEP_PREFIX[@]}" "$PY" scripts/launch_sweep.py --out "$WORK/sweep.csv" "${SWEEP_ARGS[@]}"
pack

# ---- the report (if the suite wrote anything)
if [ -f "$WORK/run/results.csv" ]; then
  stage report "$B_REPORT" "$PY" -m wkvbench.cli report "$WORK/run" -o "$WORK/report" --no-svg \
    && [ -d "$WORK/report" ] && tar czf "$OUT/report.tar.gz" -C "$WORK" report
fi
exit 0
