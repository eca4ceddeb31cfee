#!/usr/bin/env bash
# The LoRA retrofit recipe: fetch, train, evaluate, gating table (scripts/meadow_golf/retrofit/recipe.py).
#   PRESET=h100  bash experiments/2026-12-06_lora_retrofit/run_retrofit.sh   # Qwen3.5-0.8B-Base on one pod
#   PRESET=smoke bash experiments/2026-12-06_lora_retrofit/run_retrofit.sh   # tiny random Qwen3.5, CPU, minutes
# Env: W (0.3), MODE (shared|adapter_off), DELTANET (reverse|causal), BASE_MODEL, TRAIN_DATA, OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
PRESET="${PRESET:-h100}"
exec python experiments/2026-12-06_lora_retrofit/recipe.py --preset "$PRESET" --w "${W:-0.3}" --mode "${MODE:-shared}" \
  --deltanet "${DELTANET:-reverse}" --base_model "${BASE_MODEL:-}" --train_data "${TRAIN_DATA:-}" \
  --out_dir "${OUT_DIR:-runs/lora_retrofit_$PRESET}"
