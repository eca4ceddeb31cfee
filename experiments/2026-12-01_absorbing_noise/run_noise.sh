#!/usr/bin/env bash
# The noise ablation (README.md here; METHOD.md §8): the matched swap of the denoising corruption.
# At one size, cdm_weight 0.3 and 1.0 under D3PM-uniform noise (the original) and under absorbing
# [MASK] noise, plus the causal-only control: 5 cells at SEED. Trains every cell, evaluates every
# cell with the same decoders on the same windows (the absorbing cells also with the diffusion
# ELBO, a bound, ELBO_SAMPLES samples per window), then writes the summary. Idempotent: a finished
# cell is skipped, an interrupted one resumes from its newest step checkpoint, an evaluation that
# is already done is not repeated. Run it once per corpus (the default folders carry the data folder's
# name, so each corpus has its own cells; plan.py here).
#
#   PRESET=smoke bash experiments/2026-12-01_absorbing_noise/run_noise.sh
#   PRESET=cpu BUDGET_SECS=0 STEPS=120 EVAL_N_SEQS=32 EVAL_SEQ_LEN=128 bash experiments/2026-12-01_absorbing_noise/run_noise.sh
#   PRESET=cpu BUDGET_SECS=0 STEPS=120 EVAL_N_SEQS=32 EVAL_SEQ_LEN=128 DATA_DIR=data/synthetic bash experiments/2026-12-01_absorbing_noise/run_noise.sh
#   PRESET=h100 bash experiments/2026-12-01_absorbing_noise/run_noise.sh      # 5 x 540 s + evaluation
#
# Environment (defaults in brackets; the full list: scripts/meadow_golf/recipes/settings.py;
# the preset table: presets.py; the cells: plan.py here):
#   PRESET [cpu] h100|mac|cpu|smoke   NOISE_SCALE [11L; 3L96 on cpu; 2L32 on smoke]
#   NOISE_WEIGHTS [0.3 1.0]   NOISES [uniform absorbing]   SEED [1337]   CDM_LOSS [plain] plain|elbo
#   ELBO_SAMPLES [8]   DECODERS [ar,cf_published,cf_valid,bidir_l2r,bidir_confidence]
#   DATA_DIR [preset]   CKPT_DIR/LOG_DIR/OUT_DIR [runs/absorbing_noise/$PRESET/<data folder>/...]
#   BUDGET_SECS, STEPS, DEVICE, EVAL_N_SEQS [preset]   MATCH [wallclock; steps when BUDGET_SECS=0]
#   COMPARE_TO []   THREADS   PYTHON [python]   VERBOSE [0]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../../scripts${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package first
command -v "${PYTHON:-python}" >/dev/null || { echo "error: PYTHON=${PYTHON:-python}: not found (activate the project's venv or set PYTHON)" >&2; exit 1; }
exec "${PYTHON:-python}" "$HERE/plan.py" run_noise
