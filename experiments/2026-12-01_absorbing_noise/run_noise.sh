#!/usr/bin/env bash
# The noise ablation (README.md here; METHOD.md §8): the matched swap of the denoising corruption.
# At one size, cdm_weight 0.3 and 1.0 under D3PM-uniform noise (the original) and under absorbing
# [MASK] noise, plus the causal-only control: 5 cells at SEED. Trains every cell, evaluates every
# cell with the same decoders on the same windows (the absorbing cells also with the diffusion
# ELBO, a bound, ELBO_SAMPLES samples per window), then writes the summary. Idempotent: a finished
# cell is skipped, an interrupted one resumes from its newest step checkpoint, an evaluation that
# is already done is not repeated. Run it once per corpus (the default folders carry the data folder's
# name, so each corpus has its own cells; RUNS_PER_DATA in recipe_lib).
#
#   PRESET=smoke bash experiments/2026-12-01_absorbing_noise/run_noise.sh
#   PRESET=cpu BUDGET_SECS=0 STEPS=120 EVAL_N_SEQS=32 EVAL_SEQ_LEN=128 bash experiments/2026-12-01_absorbing_noise/run_noise.sh
#   PRESET=cpu BUDGET_SECS=0 STEPS=120 EVAL_N_SEQS=32 EVAL_SEQ_LEN=128 DATA_DIR=data/synthetic bash experiments/2026-12-01_absorbing_noise/run_noise.sh
#   PRESET=h100 bash experiments/2026-12-01_absorbing_noise/run_noise.sh      # 5 x 540 s + evaluation
#
# Environment (defaults in brackets; the full list and the preset table: scripts/recipe_lib.sh):
#   PRESET [cpu] h100|mac|cpu|smoke   NOISE_SCALE [11L; 3L96 on cpu; 2L32 on smoke]
#   NOISE_WEIGHTS [0.3 1.0]   NOISES [uniform absorbing]   SEED [1337]   CDM_LOSS [plain] plain|elbo
#   ELBO_SAMPLES [8]   DECODERS [ar,cf_published,cf_valid,bidir_l2r,bidir_confidence]
#   DATA_DIR [preset]   CKPT_DIR/LOG_DIR/OUT_DIR [runs/absorbing_noise/$PRESET/<data folder>/...]
#   BUDGET_SECS, STEPS, DEVICE, EVAL_N_SEQS [preset]   MATCH [wallclock; steps when BUDGET_SECS=0]
#   COMPARE_TO []   THREADS   PYTHON [python]   VERBOSE [0]
set -euo pipefail
# One denoising pass per cell: the valid ladder of its bidirectional pass (left to right and the
# confidence order, METHOD.md §8) next to ar and the CF decoders.
DECODERS="${DECODERS:-ar,cf_published,cf_valid,bidir_l2r,bidir_confidence}"
ELBO_SAMPLES="${ELBO_SAMPLES:-8}"
RUNS_NAME=absorbing_noise RUNS_PER_DATA=1
# shellcheck source=scripts/recipe_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/recipe_lib.sh"

recipe_init noise
plan_noise
print_recipe "run_noise (uniform vs absorbing noise, matched)"
train_plan
eval_plan
summarize_plan "Noise ablation (PRESET=$PRESET, data $(basename "$DATA_DIR"), MATCH=$MATCH)"
