#!/usr/bin/env bash
# The share-ratio grid (README.md here): one size, cdm_weight in GRID_WEIGHTS (0 is the causal-only
# control) at SEED; then EXTRA_SEEDS of the control and of the best shared weight (the lowest
# final_val_bpb of the grid, read from the cells' results.json), so that the optimum and the
# control both have at least two seeds. Trains, evaluates every cell with the same decoders on the
# same windows, and writes the summary (the grid plot: BPB against cdm_weight). Idempotent and
# resumable like run_6.sh: a finished cell is skipped, an interrupted one resumes.
#
#   PRESET=smoke bash experiments/2026-12-01_share_ratio_and_scale/run_wgrid.sh
#   PRESET=cpu BUDGET_SECS=0 STEPS=120 bash experiments/2026-12-01_share_ratio_and_scale/run_wgrid.sh
#   PRESET=h100 bash experiments/2026-12-01_share_ratio_and_scale/run_wgrid.sh      # 10 x 540 s at 11L
#
# Environment (defaults in brackets; the full list: scripts/meadow_golf/recipes/settings.py;
# the preset table: presets.py; the cells: plan.py here):
#   PRESET [cpu] h100|mac|cpu|smoke   GRID_SCALE [11L; 3L96 on cpu; 2L32 on smoke]
#   GRID_WEIGHTS [0 0.1 0.15 0.2 0.3 0.5 0.7 1.0]   SEED [1337]   EXTRA_SEEDS [42] ("" = none)
#   DECODERS [ar,cf_published,cf_valid,cf_valid_mix]   DATA_DIR [preset]
#   CKPT_DIR/LOG_DIR [runs/share_ratio_and_scale/$PRESET/...] (shared with run_scale.sh: a cell both
#   plan is trained once)   OUT_DIR [runs/share_ratio_and_scale/$PRESET/wgrid]
#   BUDGET_SECS, STEPS, DEVICE, EVAL_N_SEQS [preset]   MATCH [wallclock; steps when BUDGET_SECS=0]
#   COMPARE_TO []   THREADS   PYTHON [python]   VERBOSE [0]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../../scripts${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package first
command -v "${PYTHON:-python}" >/dev/null || { echo "error: PYTHON=${PYTHON:-python}: not found (activate the project's venv or set PYTHON)" >&2; exit 1; }
exec "${PYTHON:-python}" "$HERE/plan.py" run_wgrid
