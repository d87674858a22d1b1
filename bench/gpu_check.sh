#!/usr/bin/env bash
# Our training loop against the Hugging Face Trainer on one GPU (opt-125m, seq 2048, batch 16, bf16): the Trainer, then
# ours eager, --loss chunked, --compile, both, gradient checkpointing, the largest micro-batch, and a profile, within
# BUDGET_S; then the FSDP check (bench/fsdp_check.py: docker/accelerate/fsdp.yaml on up to 2 GPUs, final/ must be the
# full trained model, the FSDP checkpoint must resume; at most 3 minutes). The work is in those two scripts; this
# wrapper adds nvidia-smi, hard time limits and the log.
#
#   PYTHON=python3 BUDGET_S=280 bash bench/gpu_check.sh   # on the GPU machine, from anywhere in the repository
#   bash bench/gpu_check.sh --smoke                        # a tiny model on the CPU
#
# Writes $OUT/gpu_check.log, $OUT/results.json, $OUT/profile-VARIANT.txt and $OUT/fsdp_results.json (OUT defaults to a
# new temporary directory). Environment: PYTHON (default .venv/bin/python if present, else python3), BUDGET_S (runs
# that would start later are skipped; default 280). Other arguments go to gpu_check.py (--peak-tflops for a GPU that
# train.metrics does not know, --variants, --profile, ...).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$(mktemp -d)}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
{
  echo "[$(date +%T)] gpu_check.sh: $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'), python $PY, OUT=$OUT"
  if command -v nvidia-smi >/dev/null; then timeout 20 nvidia-smi; else echo "nvidia-smi: not found"; fi
  timeout -k 10 "$(( ${BUDGET_S:-280} + 60 ))" "$PY" bench/gpu_check.py --budget-s "${BUDGET_S:-280}" --out "$OUT" "$@"
  rc=$?
  smoke=""
  case " $* " in *" --smoke "*) smoke=--smoke ;; esac
  timeout -k 10 180 "$PY" bench/fsdp_check.py --out "$OUT" $smoke
  rc_fsdp=$?
  echo "[$(date +%T)] gpu_check.sh finished, rc $rc (throughput) and $rc_fsdp (FSDP)"
} 2>&1 | tee "$OUT/gpu_check.log"
