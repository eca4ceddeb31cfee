#!/usr/bin/env bash
# The retrodiction A/B (METHOD.md §7, the research line before the shared AR + D3PM model):
# a pure causal model (cdm_weight 0) trained with and without the reversed-sequence auxiliary loss
#     loss = CE(model(x), x) + RETRO_ALPHA * CE(model(flip(x)), flip(x))
# for the same number of steps, then Pure-AR val_bpb of each (a valid code length).
#
# Environment (defaults in brackets):
#   DATA_DIR [data/shakespeare]  prepared folder (scripts/prepare_data.py)
#   OUT_DIR [runs/retrodiction_ab]  one run folder per arm + ab.json. The committed record
#                 (this folder's cpu_ab/) is never the default: a rerun must not find it "done".
#   COMPARE_TO [this folder/cpu_ab]  a record's folder (or ab.json) printed beside the rerun's numbers
#                 (scripts/compare_record.py); "" for none
#   RETRO_ALPHA [0.5]  weight of the reversed loss in the B arm (A arm: 0)
#   STEPS [120]  BATCH_TOKENS [4096]  SEQ_LEN [256]  SEED [1337]  DEVICE [cpu]  THREADS [1]
#   MODEL_FLAGS [--num_layers 3 --model_dim 128 --bigram_dim 64 --xsa_last_n 1]  (the cpu "5L" scale)
#   PYTHON [python]  interpreter with the project installed (scripts/venv.sh)
# HEARTBEAT_SECS [60], VERBOSE [0] as in the other recipes. The arms and the steps: plan.py here.
# Idempotent: a finished arm (results.json present) is skipped; an interrupted one resumes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../../scripts${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package first
command -v "${PYTHON:-python}" >/dev/null || { echo "error: PYTHON=${PYTHON:-python}: not found (activate the project's venv or set PYTHON)" >&2; exit 1; }
exec "${PYTHON:-python}" "$HERE/plan.py" run_ab
