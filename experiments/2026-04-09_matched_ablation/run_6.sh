#!/usr/bin/env bash
# The 6-run matched ablation (METHOD.md §3/§7): scales 5L and 11L x cdm_weight 0 (causal-only control),
# 0.3 and 1.0, one seed. Each cell trains into CKPT_DIR/<scale>_w<weight>_s<seed>/; a finished
# cell (results.json) is skipped, an interrupted one resumes from its newest step checkpoint
# (--resume auto). Shared cells of a scale train before its control, so MATCH=tokens can read
# the shared run's tokens_seen. Ends with scripts/summarize.py -> OUT_DIR/results.{md,json,png}
# (training numbers only; eval_6.sh adds the decoders).
#
#   PRESET=smoke bash experiments/2026-04-09_matched_ablation/run_6.sh
#   PRESET=h100 DATA_DIR=data/v4096 bash experiments/2026-04-09_matched_ablation/run_6.sh
#
# Environment (defaults in brackets; the full list and the matching rules are in
# scripts/meadow_golf/recipes/settings.py, the preset table in presets.py, and the table is printed at start):
#   PRESET [cpu] h100|mac|cpu|smoke   BACKEND [torch; mlx for mac] torch|mlx   MATCH [wallclock; steps when BUDGET_SECS=0] wallclock|steps|tokens
#   MATCH_WEIGHT [0.3]   SCALES [5L 11L]   WEIGHTS [0 0.3 1.0]   SEED [1337]
#   DATA_DIR [preset]   TOKENIZER [from meta.json]   CKPT_DIR [runs/matched_ablation/$PRESET/cells]
#   LOG_DIR [runs/matched_ablation/$PRESET/logs]   OUT_DIR [runs/matched_ablation/$PRESET/ablation6]
#   BUDGET_SECS [preset]   STEPS [preset]   DEVICE [preset]   NPROC [1; >1: torchrun, torch only]
#   COMPILE [0]   EVAL_N_SEQS [preset]   THREADS [1 for cpu, smoke]   PYTHON [python]   VERBOSE [0]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../../scripts${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package first
command -v "${PYTHON:-python}" >/dev/null || { echo "error: PYTHON=${PYTHON:-python}: not found (activate the project's venv or set PYTHON)" >&2; exit 1; }
exec "${PYTHON:-python}" "$HERE/plan.py" run_6
