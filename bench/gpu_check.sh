#!/usr/bin/env bash
# One-shot GPU check of the trainer (one H100/H200, ~5 min): versions, imports without pyspark/datasets, opt-125m
# bf16 throughput (eager, --compile, --gradient-checkpointing) with mfu and peak memory, exact resume, and the
# HF Trainer on the same data. The work is in bench/gpu_check.py; this wrapper adds nvidia-smi, a hard time limit
# and the log.
#
#   OUT=/some/dir bash bench/gpu_check.sh            # on the GPU machine, from the repo root
#   OUT=$(mktemp -d) SMOKE=1 bash bench/gpu_check.sh # tiny sizes on CPU (or: bash bench/gpu_check.sh --smoke)
#
# Writes to $OUT (8 files at most): gpu_check.log (this output), results.json, runs.log (every subprocess's output),
# loss.png and metrics/*.jsonl. Environment: PYTHON (interpreter; default .venv/bin/python if present, else
# python3), BUDGET_S (seconds after which optional steps are skipped, default 480), PEAK_TFLOPS (for a GPU that
# train.metrics does not know).
set -u
cd "$(dirname "$0")/.." || exit 1
: "${OUT:?set OUT to the output directory}"
SMOKE=${SMOKE:-0}
[ "${1:-}" = "--smoke" ] && SMOKE=1
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
ARGS=(--out "$OUT" --budget-s "${BUDGET_S:-480}")
[ "$SMOKE" = 1 ] && ARGS+=(--smoke)

{
  echo "[$(date +%T)] gpu_check.sh: repo $(pwd), python $PY, smoke=$SMOKE, OUT=$OUT"
  echo "[$(date +%T)] step 1: nvidia-smi"
  if command -v nvidia-smi >/dev/null 2>&1; then
    timeout 20 nvidia-smi || echo "nvidia-smi failed (rc $?)"
  else
    echo "nvidia-smi: not found"
  fi
  # Hard limit below the machine's 9 minutes; results.json is rewritten after every step, so a kill keeps them.
  timeout -k 10 505 "$PY" bench/gpu_check.py "${ARGS[@]}"
  rc=$?
  [ "$rc" = 124 ] && echo "gpu_check.py TIMED OUT after 505 s (partial results in $OUT/results.json)"
  echo "[$(date +%T)] gpu_check.sh finished, rc $rc"
} 2>&1 | tee "$OUT/gpu_check.log"
