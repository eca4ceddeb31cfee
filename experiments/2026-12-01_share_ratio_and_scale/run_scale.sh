#!/usr/bin/env bash
# The scale sweep (README.md here): every size of SWEEP_SCALES, the causal-only control and
# every cdm_weight of SWEEP_WEIGHTS, at every seed of SEEDS. Trains, evaluates every cell with the same
# decoders on the same windows, and writes the summary with the fits against model size: the
# Pure-AR tax of joint training (shared ar minus control ar) and the best valid decoder's gap to
# the control, each with its CI. Idempotent and resumable like run_6.sh.
#
#   PRESET=smoke bash experiments/2026-12-01_share_ratio_and_scale/run_scale.sh
#   PRESET=cpu BUDGET_SECS=0 STEPS=120 SWEEP_WEIGHTS="0.1 0.3" bash experiments/2026-12-01_share_ratio_and_scale/run_scale.sh
#   PRESET=h100 bash experiments/2026-12-01_share_ratio_and_scale/run_scale.sh     # 20 x 540 s
#
# Environment (defaults in brackets; the full list: scripts/meadow_golf/recipes/settings.py;
# the preset table: presets.py; the cells: plan.py here):
#   PRESET [cpu] h100|mac|cpu|smoke
#   SWEEP_SCALES [5L256 7L384 9L448 11L512 13L640 on h100/mac; 2L32 2L64 3L96 4L128 on cpu; 2L32 3L48 on smoke]
#   SWEEP_WEIGHTS [0.3] (the original's share; add run_wgrid.sh's best weight to sweep it too)
#   SEEDS [1337 42]   DECODERS [ar,cf_published,cf_valid,cf_valid_mix]   DATA_DIR [preset]
#   CKPT_DIR/LOG_DIR [runs/share_ratio_and_scale/$PRESET/...] (shared with run_wgrid.sh)
#   OUT_DIR [runs/share_ratio_and_scale/$PRESET/scale]
#   BUDGET_SECS, STEPS, DEVICE, EVAL_N_SEQS [preset]   MATCH [wallclock; steps when BUDGET_SECS=0]
#   COMPARE_TO []   THREADS   PYTHON [python]   VERBOSE [0]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../../scripts${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package first
command -v "${PYTHON:-python}" >/dev/null || { echo "error: PYTHON=${PYTHON:-python}: not found (activate the project's venv or set PYTHON)" >&2; exit 1; }
exec "${PYTHON:-python}" "$HERE/plan.py" run_scale
