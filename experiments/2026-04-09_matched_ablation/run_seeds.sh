#!/usr/bin/env bash
# The seed verification (METHOD.md §7): the shared model at SEED_SCALE (11L) and cdm_weight SEED_WEIGHT
# (0.3) with seeds 1337 42 2024 7 100, plus causal-only controls (w=0) with seeds 1337 42 2024:
# the original measured one control seed, so its seed-to-seed variance was unknown. Cells go to
# the same CKPT_DIR as run_6.sh, so cells it already trained (same recipe) are reused. A finished
# cell is skipped, an interrupted one resumes (--resume auto). Ends with scripts/summarize.py
# (mean ± std per group, t-tests against the control) -> OUT_DIR/results.{md,json,png}.
#
#   PRESET=smoke bash experiments/2026-04-09_matched_ablation/run_seeds.sh
#
# Environment (defaults in brackets; the full list and the matching rules are in
# scripts/meadow_golf/recipes/settings.py, the preset table in presets.py, and the table is printed at start):
#   PRESET [cpu] h100|mac|cpu|smoke   BACKEND [torch; mlx for mac] torch|mlx   MATCH [wallclock; steps when BUDGET_SECS=0] wallclock|steps|tokens
#   SEED_SCALE [11L]   SEED_WEIGHT [0.3]   SEEDS [1337 42 2024 7 100]   CONTROL_SEEDS [1337 42 2024] ("" = none)
#   DATA_DIR [preset]   TOKENIZER [from meta.json]   CKPT_DIR [runs/matched_ablation/$PRESET/cells]
#   LOG_DIR [runs/matched_ablation/$PRESET/logs]   OUT_DIR [runs/matched_ablation/$PRESET/seeds]
#   BUDGET_SECS [preset]   STEPS [preset]   DEVICE [preset]   NPROC [1; >1: torchrun, torch only]
#   COMPILE [0]   EVAL_N_SEQS [preset]   THREADS [1 for cpu, smoke]   PYTHON [python]   VERBOSE [0]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../../scripts${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package first
command -v "${PYTHON:-python}" >/dev/null || { echo "error: PYTHON=${PYTHON:-python}: not found (activate the project's venv or set PYTHON)" >&2; exit 1; }
exec "${PYTHON:-python}" "$HERE/plan.py" run_seeds
