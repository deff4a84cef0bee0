#!/usr/bin/env bash
# One stage of the GPU evidence run (issue "GPU evidence"), sized for one <= 10 min device call.
#
#   scripts/gpu_evidence.sh verify   # env, kernels, verify (all ops) and verify --long -> $OUT
#   scripts/gpu_evidence.sh paper    # suites/paper.toml into runs/paper (resumable), tarred to $OUT
#   scripts/gpu_evidence.sh scaling  # suites/scaling.toml, likewise
#   scripts/gpu_evidence.sh report   # report of runs/paper -> $OUT/report.tar.gz
#
# Runs from the checkout (PYTHONPATH=.) on the GPU image as it is; wheels carried in .whl/
# are installed into /tmp/site first. fla-core (the peer) is not on the image: fetch it here with
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl fla-core==0.6.0
# (pure Python; einops is on the image) and name .whl in the device call's carry. A stage stops itself before the
# device's 10-minute limit (STAGE_TIMEOUT, default 540 s); `--resume` picks up where it stopped
# if runs/ is carried back in the next call.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
OUT="${OUT:-out}"; mkdir -p "$OUT" runs
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
T="${STAGE_TIMEOUT:-540}"
wkv() { python3 -m wkvbench.cli "$@"; }
case "${1:-verify}" in
  verify)
    wkv env > "$OUT/env.json"
    wkv kernels 2>&1 | tee "$OUT/kernels.txt"
    timeout "$T" python3 -m wkvbench.cli verify --long --out "$OUT/verify_long.csv" 2>&1 | tee "$OUT/verify_long.txt"
    ;;
  paper|scaling)
    timeout -s INT "$T" python3 -m wkvbench.cli run "suites/$1.toml" --out "runs/$1" --resume --no-progress 2>&1 | tail -40
    tar czf "$OUT/run-$1.tar.gz" "runs/$1"
    ;;
  report)
    wkv report runs/paper -o "runs/paper/report" && tar czf "$OUT/report.tar.gz" runs/paper
    ;;
  *) echo "unknown stage $1" >&2; exit 2 ;;
esac
