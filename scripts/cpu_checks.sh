#!/usr/bin/env bash
# Regenerate reports/cpu-checks/* on a machine without a GPU, each file stamped (scripts/cpu_checks.py)
# with its commit and the SHA-256 of every kernel source; `make cpu-checks` runs it.
#
#   scripts/cpu_checks.sh                       # everything (tens of minutes on 2 cores)
#   CPU_CHECKS_ONLY=kernels scripts/cpu_checks.sh   # some: verify, verify-grad, kernels, timing
#
# verify / verify-grad: every CPU-runnable implementation against float64 (Triton in the
# interpreter, Numba in the CUDA simulator, at tiny shapes), outputs and the training paths'
# gradients; kernels: every GPU kernel variant compiled for sm_90 without a GPU; timing:
# torch_chunked against torch_loop on the CPU. A check's exit code goes in its stamp.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PYTHON:-python3}
DIR=${CPU_CHECKS_DIR:-reports/cpu-checks}
ONLY=${CPU_CHECKS_ONLY:-}
mkdir -p "$DIR"
wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
stamp() { "$PY" scripts/cpu_checks.py stamp "$DIR" "$@" && echo "stamped $1: exit $2" >&2; }

if wanted verify; then
  cmd=("$PY" -m wkvbench.cli --interpret verify --device cpu --out "$DIR/verify_cpu_interpret.csv")
  "${cmd[@]}" > "$DIR/verify_cpu_interpret.txt"; rc=$?
  stamp verify_cpu_interpret.txt "$rc" "wkvbench --interpret verify --device cpu"
  stamp verify_cpu_interpret.csv "$rc" "wkvbench --interpret verify --device cpu"
fi
if wanted verify-grad; then
  impls=triton_chunked,triton_chunked_tf32,triton_chunked_tc,triton_recurrent,numba_cuda
  "$PY" -m wkvbench.cli --interpret verify --op bi_wkv7 --grad --device cpu --impl "$impls" \
    --out "$DIR/verify_grad_cpu_interpret.csv" > "$DIR/verify_grad_cpu_interpret.txt"; rc=$?
  for f in verify_grad_cpu_interpret.txt verify_grad_cpu_interpret.csv; do
    stamp "$f" "$rc" "wkvbench --interpret verify --op bi_wkv7 --grad --device cpu --impl $impls"
  done
fi
if wanted kernels; then
  env -u TRITON_INTERPRET -u NUMBA_ENABLE_CUDASIM "$PY" -m wkvbench.cli kernels > "$DIR/kernels_sm90.txt"; rc=$?
  stamp kernels_sm90.txt "$rc" "wkvbench kernels"
fi
if wanted timing; then
  rm -rf "$DIR/torch_chunked_vs_loop"
  args=(--op bi_wkv7 --impl torch_loop,torch_chunked --model A-RWKV-S --tokens 2048 --batch 1 --dtype float32
        --device cpu --budget-s 3 --rounds 5)
  "$PY" -m wkvbench.cli run "${args[@]}" --out "$DIR/torch_chunked_vs_loop" --no-progress; rc=$?
  stamp torch_chunked_vs_loop "$rc" "wkvbench run ${args[*]}"
fi
"$PY" scripts/cpu_checks.py check "$DIR"
