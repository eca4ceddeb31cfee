#!/usr/bin/env bash
# Evaluate the seed verification trained by run_seeds.sh (same environment, same cells) on the
# final checkpoints (final_model.npz) with eval_cf.py's decoders ar, cf_published (NOT a valid
# code length, METHOD.md §6) and cf_valid; eval_cf.json lands next to each results.json. A cell whose
# eval_cf.json is newer than its results.json and used this protocol is skipped. Ends with
# scripts/summarize.py (mean ± std, t-tests against the control) -> OUT_DIR/results.{md,json,png}.
#
#   PRESET=smoke bash experiments/2026-04-09_matched_ablation/eval_seeds.sh
#
# Environment (defaults in brackets; the full list: scripts/meadow_golf/recipes/settings.py; presets: presets.py):
#   PRESET [cpu] h100|mac|cpu|smoke   BACKEND [torch; mlx for mac]   MATCH [wallclock; steps when BUDGET_SECS=0] wallclock|steps|tokens
#   SEED_SCALE [11L]   SEED_WEIGHT [0.3]   SEEDS [1337 42 2024 7 100]   CONTROL_SEEDS [1337 42 2024] ("" = none)
#   DATA_DIR [preset]   TOKENIZER [from meta.json]   CKPT_DIR [runs/matched_ablation/$PRESET/cells]
#   LOG_DIR [runs/matched_ablation/$PRESET/logs]   OUT_DIR [runs/matched_ablation/$PRESET/seeds]
#   COMPARE_TO [] a record folder (e.g. cpu_record/seeds) printed beside this run's numbers
#   DEVICE [preset]   EVAL_N_SEQS [preset]   THREADS [1 for cpu, smoke]   NPROC [1; evaluation runs one process]   PYTHON [python]   VERBOSE [0]
#   (BUDGET_SECS, STEPS, COMPILE are accepted and only shown in the table)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../../scripts${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package first
command -v "${PYTHON:-python}" >/dev/null || { echo "error: PYTHON=${PYTHON:-python}: not found (activate the project's venv or set PYTHON)" >&2; exit 1; }
exec "${PYTHON:-python}" "$HERE/plan.py" eval_seeds
