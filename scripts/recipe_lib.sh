# shellcheck shell=bash
# recipe_lib.sh: what the recipes of every dated experiment share (sourced, not run), e.g.
# experiments/2026-04-09_matched_ablation/{run_6,eval_6,run_seeds,eval_seeds}.sh and
# scripts/quickstart.sh: environment defaults, the preset table, the cell plans, and the
# train-one-cell / eval-one-cell steps with their "is this cell done" checks
# (scripts/meadow_golf/recipes/cell_status.py reads the JSON; logs are never parsed).
# Written for bash 3.2 as well (macOS): no associative arrays, namerefs or mapfile.
#
# The experiment is the folder of the recipe that sources this file (EXP_DIR): its thin entry
# scripts train_cdm.py, train_cdm_mlx.py and eval_cf.py are the ones run. A recipe outside an
# experiment folder (scripts/quickstart.sh) names one in RECIPE_EXP_DIR before sourcing.
# RUNS_NAME (below) names the default runs folder runs/$RUNS_NAME/$PRESET.
#
# Environment (defaults in brackets). Relative paths given by you are taken from the current
# directory; the defaults are computed from the repository root (this file's folder's parent).
#   PRESET [cpu]          h100 | mac | cpu | smoke (table below; printed at start)
#   BACKEND [torch; mlx for PRESET=mac]  torch: train_cdm.py | mlx: train_cdm_mlx.py. Evaluation is
#                         eval_cf.py --backend $BACKEND on the cell's portable final_model.npz, so
#                         BACKEND=mlx trains, evaluates and summarizes without torch installed.
#   MATCH [wallclock]     wallclock: every cell of a scale gets the same budget (the original).
#                         With BUDGET_SECS=0 there is no clock and the step cap decides every cell's
#                         length: MATCH then reads `steps` (recorded in cell.json and printed so);
#                         MATCH=steps may be given, and needs BUDGET_SECS=0.
#                         tokens: each control (w=0) trains for exactly the training tokens of the
#                         shared run it is matched to: --steps tokens_seen/batch_tokens and
#                         --train_budget_secs 0, read from that run's results.json after it finished.
#                         run_6: matched to the w=MATCH_WEIGHT cell of the same scale and seed;
#                         run_seeds: to the w=SEED_WEIGHT cell of the same seed (the first of SEEDS
#                         when the control seed is not among SEEDS). Cell names get a `_tok` suffix.
#   MATCH_WEIGHT [0.3]    run_6 with MATCH=tokens: the shared weight the controls match
#   DATA_DIR [preset]     prepared folder (scripts/prepare_data.py): data/v4096 (h100, mac),
#                         data/shakespeare (cpu, smoke)
#   TOKENIZER []          SentencePiece model; empty: the one named in DATA_DIR/meta.json
#   CKPT_DIR [runs/$RUNS_NAME/$PRESET/cells]  one folder per cell: step checkpoints,
#                         final_model.npz, results.json, eval_cf.json, cell.json. run_6 and
#                         run_seeds share it, so a seed cell already trained by run_6 is reused.
#   LOG_DIR [runs/$RUNS_NAME/$PRESET/logs]    <cell>.train.log / <cell>.eval.log (stdout+stderr)
#   OUT_DIR [runs/$RUNS_NAME/$PRESET/ablation6 (run_6, eval_6) | .../seeds (run/eval_seeds)]
#                         results.md, results.json, results.png (scripts/summarize.py). The committed
#                         record (cpu_record/) is never a default: a rerun must not find its cells "done".
#   COMPARE_TO []         eval_6 / eval_seeds: a record's folder (or its results.json), e.g.
#                         experiments/2026-04-09_matched_ablation/cpu_record/ablation6, printed beside
#                         the rerun's numbers after the summary (scripts/compare_record.py)
#   BUDGET_SECS [preset]  wall-clock budget per cell (0: none); as in the original its clock includes
#                         compilation, validations and step saves (train_cdm.py --clock original)
#   STEPS [preset]        step cap per cell, also the nominal length that places the EMA start
#                         (int(0.8 * STEPS)) and the step-based warmdown; the original passed 9999
#   DEVICE [preset]       auto | cuda | mps | cpu, for training and evaluation
#   NPROC [1]             processes per training run; > 1 launches train_cdm.py under
#                         `python -m torch.distributed.run --standalone --nproc_per_node=NPROC` (DDP:
#                         NCCL on CUDA, one GPU per process; gloo on CPU). The global batch stays the
#                         preset's, so a cell's recipe (and its results, up to float rounding) does not
#                         depend on NPROC. torch only.
#   FUSE_PASSES [0]       1: --fuse_passes (the passes of a joint step in one batched forward; torch)
#   COMPILE [1 for h100, as the original; 0 elsewhere]  1: torch.compile both passes (torch
#                         backend; compiled in a warm-up before the wall-clock budget starts)
#   EVAL_N_SEQS [preset]  random evaluation windows per cell
#   EVAL_SEQ_LEN [preset] targets per evaluation window (the chain-rule decoders of the bidirectional
#                         pass cost one forward per target, so their time grows as its square)
#   DECODERS [ar,cf_published,cf_valid,cf_valid_mix,cf_bidir_skeleton,cf_bidir_skeleton_mix]
#                         eval_cf.py --decoders of every cell
#   THREADS [1 for cpu and smoke; empty (the library default) for h100 and mac]  exported as
#                         OMP_NUM_THREADS / MKL_NUM_THREADS. On a CPU shared with other jobs, torch's
#                         default of one thread per core can run tens of times slower (threads spin
#                         waiting for each other); THREADS=2 is about twice as fast on an idle 2-core machine.
#   PYTHON [python]       interpreter with the project installed (scripts/venv.sh ensure_venv); its
#                         modules are checked before the first cell (scripts/python_deps.py)
#   VERBOSE [0]           1: show the trainer/evaluator output on the terminal too
#   HEARTBEAT_SECS [60]   while a cell runs (VERBOSE=0), a `[beat ]` line every N seconds with
#                         the last line of its log; 0: none
#   NOISE [uniform]       uniform | absorbing: the denoising corruption of every shared cell
#                         (train_cdm.py --noise); plan_noise sets it per cell. Absorbing cells are
#                         named with an `_abs` suffix; a control (w=0) has no denoising pass, so it
#                         has no noise and one control serves both noises.
#   CDM_LOSS [plain]      plain | elbo: train_cdm.py --cdm_loss of the absorbing cells (elbo: suffix `_elbo`)
#   ELBO_SAMPLES [0]      K > 0: eval_cf.py --elbo_samples K on every absorbing cell (the diffusion
#                         ELBO, an upper bound with its standard error; METHOD.md §8)
#   RUNS_NAME [the experiment folder's name without its date]  the folder under runs/ that the
#                         default CKPT_DIR/LOG_DIR/OUT_DIR use (matched_ablation for 2026-04-09_matched_ablation)
#   RUNS_PER_DATA [0]     1: the defaults add the data folder's name (runs/$RUNS_NAME/$PRESET/<data>),
#                         for recipes that run once per corpus
# Scales: 5L and 11L are the original ablation's two sizes (their stand-ins under cpu and smoke, in
# the table below). A size name <L>L<d>, e.g. 7L384, is that size on every preset: --num_layers L
# --model_dim d, the preset's heads and bigram width, and --xsa_last_n max(1, (L+1)/3) (2 at 5L and
# 4 at 11L, as the original).
# run_6.sh / eval_6.sh:         SCALES [5L 11L]  WEIGHTS [0 0.3 1.0]  SEED [1337]
# run_seeds.sh / eval_seeds.sh: SEED_SCALE [11L]  SEED_WEIGHT [0.3]
#                               SEEDS [1337 42 2024 7 100]  CONTROL_SEEDS [1337 42 2024] ("" = none)
#
# Presets. The scale names are those of the original 6-run ablation (METHOD.md §3); under cpu and
# smoke they stand for smaller models (8 heads / 4 KV heads unless stated):
# | PRESET | "5L" trains                    | "11L" trains                    | seq  | tokens/step  | per cell           | eval (eval_cf.py)          | data, device        |
# |--------|--------------------------------|---------------------------------|------|--------------|--------------------|----------------------------|---------------------|
# | h100   | 5L d=256 bigram 128 XSA 2      | 11L d=512 bigram 128 XSA 4      | 1024 | 64 x 1024    | 540 s              | 500 random windows x 1024  | data/v4096, cuda    |
# | mac    | 5L d=256 bigram 128 XSA 2      | 11L d=512 bigram 128 XSA 4      | 1024 | 32 x 1024    | 900 s              | 200 random windows x 1024  | data/v4096, auto    |
# | cpu    | 3L d=128 bigram 64 XSA 1       | 4L d=192 bigram 64 XSA 2        | 256  | 16 x 256     | 300 s              | 64 random windows x 256    | shakespeare, cpu    |
# | smoke  | 2L d=32 4/2 heads bigram 16 XSA 1 | 3L d=48 4/2 heads bigram 16 XSA 1 | 32 | 8 x 32    | 4 steps, no clock  | 8 random windows x 32      | shakespeare, cpu    |
# h100 follows every rule of the original recipe that train_cdm.py implements (METHOD.md §4; the
# README's rules table lists each rule and its known differences): vocab-4096 data, 540 s on the
# original's clock, --steps 9999, 64 x 1024 tokens per step, validation every 500 steps on the first
# 1,000,000 validation tokens (999,424 targets), eval on 500 windows of 1024 targets.
# The other presets apply the same rules, scaled (rule_flags): the step-based warmdown covers the
# same share of STEPS as the original's 1000 of 9999, and the time-based warmdown the same share of
# BUDGET_SECS as the original's 80 of 540 s (cpu: 44.4 s of 300 s; mac: 133.3 s of 900 s).
# cpu: the 6-run ablation plus its evaluation in about 40 minutes on 2 cores (6 x 300 s of
# training, then about a minute of evaluation per cell); mac: an M-series Mac with BACKEND=mlx,
# 15 minutes a cell. smoke: CI; a step cap (not a clock) makes it deterministic.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# BASH_SOURCE[1] is the file that sourced this one: the recipe, in its experiment folder.
if [[ -n "${RECIPE_EXP_DIR:-}" ]]; then
  EXP_DIR="$(cd "$RECIPE_EXP_DIR" && pwd)"
elif [[ -n "${BASH_SOURCE[1]:-}" ]]; then
  EXP_DIR="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
else
  echo "error: source recipe_lib.sh from a recipe file in an experiment folder, or set RECIPE_EXP_DIR" >&2
  return 1
fi
RUNS_NAME="${RUNS_NAME:-$(basename "$EXP_DIR" | sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2}_//')}"
# Every decoder on the same windows: the valid ladder (ar, cf_valid and cf_bidir_skeleton, each
# also as the fill mixture, which reuses their forwards) and the published CF number beside it.
# cf_bidir_skeleton costs one forward per skeleton token and fill.
DECODERS="${DECODERS:-ar,cf_published,cf_valid,cf_valid_mix,cf_bidir_skeleton,cf_bidir_skeleton_mix}"

die() {
  echo "error: $*" >&2
  exit 1
}

abs_path() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}

is_zero() { [[ "$1" =~ ^0+(\.0+)?$ ]]; }

cell_py() { "$PYTHON" -m meadow_golf.recipes.cell_status "$@"; }

# ----------------------------------------------------------------------------- presets
# Each sets P_* defaults, the model flags of both scales, the shared training flags
# (TRAIN_FLAGS: part of every cell's recipe), IO_FLAGS (logging/saving, not part of the recipe)
# and the evaluation protocol.

preset_h100() {
  SIZE_HEADS="" SIZE_BIGRAM_DIM=128
  P_THREADS="" P_COMPILE=1
  P_DATA_DIR="$ROOT/data/v4096" P_DEVICE=cuda P_BUDGET_SECS=540 P_STEPS=9999
  FLAGS_5L="--num_layers 5 --model_dim 256 --bigram_dim 128 --xsa_last_n 2"
  FLAGS_11L="--num_layers 11 --model_dim 512 --bigram_dim 128 --xsa_last_n 4"
  SEQ_LEN=1024 BATCH_TOKENS=65536
  TRAIN_FLAGS=(--seq_len 1024 --batch_tokens 65536 --val_tokens 1000000)
  IO_FLAGS=(--val_every 500 --save_every 500 --log_every 50)
  P_EVAL_SEQ_LEN=1024 P_EVAL_N_SEQS=500 EVAL_BATCH=16
}

preset_mac() {
  SIZE_HEADS="" SIZE_BIGRAM_DIM=128
  P_THREADS=""
  P_DATA_DIR="$ROOT/data/v4096" P_DEVICE=auto P_BUDGET_SECS=900 P_STEPS=9999
  FLAGS_5L="--num_layers 5 --model_dim 256 --bigram_dim 128 --xsa_last_n 2"
  FLAGS_11L="--num_layers 11 --model_dim 512 --bigram_dim 128 --xsa_last_n 4"
  SEQ_LEN=1024 BATCH_TOKENS=32768
  TRAIN_FLAGS=(--seq_len 1024 --batch_tokens 32768 --val_tokens 262144)
  IO_FLAGS=(--val_every 200 --save_every 200 --log_every 20)
  P_EVAL_SEQ_LEN=1024 P_EVAL_N_SEQS=200 EVAL_BATCH=8
}

preset_cpu() {
  SIZE_HEADS="" SIZE_BIGRAM_DIM=64
  P_THREADS=1
  P_DATA_DIR="$ROOT/data/shakespeare" P_DEVICE=cpu P_BUDGET_SECS=300 P_STEPS=9999
  FLAGS_5L="--num_layers 3 --model_dim 128 --bigram_dim 64 --xsa_last_n 1"
  FLAGS_11L="--num_layers 4 --model_dim 192 --bigram_dim 64 --xsa_last_n 2"
  SEQ_LEN=256 BATCH_TOKENS=4096
  TRAIN_FLAGS=(--seq_len 256 --batch_tokens 4096 --val_tokens 65536)
  IO_FLAGS=(--val_every 200 --save_every 50 --log_every 10)
  P_EVAL_SEQ_LEN=256 P_EVAL_N_SEQS=64 EVAL_BATCH=16
}

preset_smoke() {
  SIZE_HEADS="--num_heads 4 --num_kv_heads 2" SIZE_BIGRAM_DIM=16
  P_THREADS=1
  P_DATA_DIR="$ROOT/data/shakespeare" P_DEVICE=cpu P_BUDGET_SECS=0 P_STEPS=4
  FLAGS_5L="--num_layers 2 --model_dim 32 --num_heads 4 --num_kv_heads 2 --bigram_dim 16 --xsa_last_n 1"
  FLAGS_11L="--num_layers 3 --model_dim 48 --num_heads 4 --num_kv_heads 2 --bigram_dim 16 --xsa_last_n 1"
  SEQ_LEN=32 BATCH_TOKENS=256
  TRAIN_FLAGS=(--seq_len 32 --batch_tokens 256 --val_tokens 2048 --val_batch_size 16)
  IO_FLAGS=(--val_every 0 --save_every 2 --log_every 2)
  P_EVAL_SEQ_LEN=32 P_EVAL_N_SEQS=8 EVAL_BATCH=8
}

is_size_name() { [[ "$1" =~ ^[1-9][0-9]*L[1-9][0-9]*$ ]]; }  # <L>L<d>, e.g. 7L384

scale_flags() {  # SCALE -> the model flags of that scale under the preset
  case "$1" in
    5L) printf '%s\n' "$FLAGS_5L" ;;
    11L) printf '%s\n' "$FLAGS_11L" ;;
    *)
      is_size_name "$1" || die "unknown scale '$1'; choose 5L, 11L or a size <L>L<d> such as 7L384"
      local layers="${1%%L*}" dim="${1#*L}" xsa
      xsa=$(((layers + 1) / 3))
      [[ "$xsa" -ge 1 ]] || xsa=1
      printf '%s\n' "--num_layers $layers --model_dim $dim ${SIZE_HEADS:+$SIZE_HEADS }--bigram_dim $SIZE_BIGRAM_DIM --xsa_last_n $xsa"
      ;;
  esac
}

spec_scale() {  # SCALE -> what it is in the original ablation (METHOD.md §3)
  case "$1" in
    5L) echo "5 layers, d=256 (~4.3 M params)" ;;
    11L) echo "11 layers, d=512 (~28.4 M params)" ;;
    *) echo "${1%%L*} layers, d=${1#*L} (this size on every preset)" ;;
  esac
}

# ----------------------------------------------------------------------------- setup

check_number() {  # NAME VALUE: a non-negative number
  [[ "$2" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$1=$2: expected a non-negative number"
}

check_int() {  # NAME VALUE: a non-negative integer
  [[ "$2" =~ ^[0-9]+$ ]] || die "$1=$2: expected a non-negative integer"
}

check_noise() {  # NAME VALUE: a train_cdm.py --noise
  case "$2" in
    uniform | absorbing) ;;
    *) die "$1: unknown noise '$2'; choose uniform or absorbing" ;;
  esac
}

# recipe_init KIND: environment defaults, validation and the preset; KIND (ablation6, seeds,
# quickstart) names the default OUT_DIR folder.
recipe_init() {
  local kind="$1"
  PRESET="${PRESET:-cpu}"
  case "$PRESET" in
    h100 | mac | cpu | smoke) ;;
    *) die "PRESET=$PRESET: unknown preset; choose h100, mac, cpu or smoke" ;;
  esac
  local default_backend=torch
  [[ "$PRESET" == mac ]] && default_backend=mlx
  BACKEND="${BACKEND:-$default_backend}"
  case "$BACKEND" in
    torch) TRAINER="$EXP_DIR/train_cdm.py" ;;
    mlx) TRAINER="$EXP_DIR/train_cdm_mlx.py" ;;
    *) die "BACKEND=$BACKEND: unknown backend; choose torch or mlx" ;;
  esac
  MATCH="${MATCH:-wallclock}"
  case "$MATCH" in
    wallclock | tokens | steps) ;;
    *) die "MATCH=$MATCH: unknown matching; choose wallclock, tokens or steps" ;;
  esac
  NPROC="${NPROC:-1}"
  [[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || die "NPROC=$NPROC: expected a positive integer"
  [[ "$NPROC" == 1 || "$BACKEND" == torch ]] || die "NPROC=$NPROC: multi-process training (torchrun/DDP) is torch only; use NPROC=1 with BACKEND=$BACKEND"
  "preset_$PRESET"

  DATA_DIR="$(abs_path "${DATA_DIR:-$P_DATA_DIR}")"
  TOKENIZER="${TOKENIZER:-}"
  [[ -z "$TOKENIZER" ]] || TOKENIZER="$(abs_path "$TOKENIZER")"
  local base="$ROOT/runs/$RUNS_NAME/$PRESET"
  [[ "${RUNS_PER_DATA:-0}" != 1 ]] || base="$base/$(basename "$DATA_DIR")"
  CKPT_DIR="$(abs_path "${CKPT_DIR:-$base/cells}")"
  LOG_DIR="$(abs_path "${LOG_DIR:-$base/logs}")"
  OUT_DIR="$(abs_path "${OUT_DIR:-$base/$kind}")"
  BUDGET_SECS="${BUDGET_SECS:-$P_BUDGET_SECS}"
  STEPS="${STEPS:-$P_STEPS}"
  DEVICE="${DEVICE:-$P_DEVICE}"
  COMPILE="${COMPILE:-${P_COMPILE:-0}}"
  FUSE_PASSES="${FUSE_PASSES:-0}"
  [[ "$FUSE_PASSES" == 0 || "$BACKEND" == torch ]] || die "FUSE_PASSES=1 is torch only (BACKEND=$BACKEND)"
  EVAL_N_SEQS="${EVAL_N_SEQS:-$P_EVAL_N_SEQS}"
  EVAL_SEQ_LEN="${EVAL_SEQ_LEN:-$P_EVAL_SEQ_LEN}"
  THREADS="${THREADS-$P_THREADS}"
  PYTHON="${PYTHON:-python}"
  VERBOSE="${VERBOSE:-0}"
  HEARTBEAT_SECS="${HEARTBEAT_SECS:-60}"
  check_int HEARTBEAT_SECS "$HEARTBEAT_SECS"
  MATCH_WEIGHT="${MATCH_WEIGHT:-0.3}"
  check_number BUDGET_SECS "$BUDGET_SECS"
  # Without a clock the step cap decides: say so rather than call it wall-clock matching.
  if is_zero "$BUDGET_SECS"; then
    [[ "$MATCH" != wallclock ]] || MATCH=steps
  else
    [[ "$MATCH" != steps ]] || die "MATCH=steps: the step cap decides only without a clock; set BUDGET_SECS=0"
  fi
  check_int STEPS "$STEPS"
  check_int EVAL_N_SEQS "$EVAL_N_SEQS"
  check_int EVAL_SEQ_LEN "$EVAL_SEQ_LEN"
  [[ "$EVAL_SEQ_LEN" -ge 2 ]] || die "EVAL_SEQ_LEN=$EVAL_SEQ_LEN: a window needs at least 2 targets"
  if [[ -n "$THREADS" ]]; then
    [[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "THREADS=$THREADS: expected a positive integer (or empty)"
    export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
  fi
  check_number MATCH_WEIGHT "$MATCH_WEIGHT"
  NOISE="${NOISE:-uniform}"
  check_noise NOISE "$NOISE"
  CDM_LOSS="${CDM_LOSS:-plain}"
  case "$CDM_LOSS" in
    plain | elbo) ;;
    *) die "CDM_LOSS=$CDM_LOSS: choose plain or elbo" ;;
  esac
  ELBO_SAMPLES="${ELBO_SAMPLES:-0}"
  check_int ELBO_SAMPLES "$ELBO_SAMPLES"
  COMPARE_TO="${COMPARE_TO:-}"
  [[ -z "$COMPARE_TO" ]] || COMPARE_TO="$(abs_path "$COMPARE_TO")"
  [[ -z "$COMPARE_TO" || -e "$COMPARE_TO" ]] || die "COMPARE_TO=$COMPARE_TO does not exist (a record folder holding results.json)"
  [[ "$STEPS" != 0 ]] || die "STEPS=0: the original's rules need a nominal step count (its recipe used 9999)"
  case "$DEVICE" in
    auto | cuda | mps | cpu) ;;
    *) die "DEVICE=$DEVICE: choose auto, cuda, mps or cpu" ;;
  esac
  command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON: not found (activate the project's venv or set PYTHON)"
  # This checkout's shared library (scripts/) comes first, so a rerun in a fresh clone runs its own
  # code even when PYTHON's environment has another checkout installed in editable mode.
  export PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}"
  check_python_deps
  [[ -f "$DATA_DIR/meta.json" ]] || die "DATA_DIR=$DATA_DIR: not a prepared data folder (no meta.json);" \
    "prepare one with: python scripts/prepare_data.py shakespeare --out DIR (or fineweb-v4096)"
  TOKENIZER_FLAGS=()
  [[ -z "$TOKENIZER" ]] || TOKENIZER_FLAGS=(--tokenizer_path "$TOKENIZER")
  EVAL_FLAGS=(--n_seqs "$EVAL_N_SEQS" --seq_len "$EVAL_SEQ_LEN" --batch_size "$EVAL_BATCH" --decoders "$DECODERS")
}

# Before the first cell, one line if PYTHON lacks a module that a step imports: the trainer
# (torch or mlx), eval_cf.py (always torch), the data readers (numpy, sentencepiece) and the
# summary's plot (matplotlib). Looked up, not imported: milliseconds.
check_python_deps() {
  local modules=(torch numpy sentencepiece matplotlib) extra=()
  if [[ "$BACKEND" == mlx ]]; then modules+=(mlx); extra=(--extra mlx); fi
  "$PYTHON" "$ROOT/scripts/python_deps.py" "${modules[@]}" ${extra[@]+"${extra[@]}"} \
    --python_label "PYTHON=$PYTHON" || exit 1
}

# ----------------------------------------------------------------------------- plans
# PLAN: one entry per cell, "name|scale|weight|seed|matched_to" (matched_to: empty unless a
# token-matched control), each shared cell before the control that may be matched to it.

cell_name() {  # SCALE WEIGHT SEED [tok]
  printf '%s_w%s_s%s%s\n' "$1" "$2" "$3" "${4:+_tok}"
}

# The name's suffix for a shared cell's noise: none for uniform (the original, so run_6's names
# stay), `_abs` for absorbing, `_abs_elbo` with CDM_LOSS=elbo. A control (w=0) has no noise.
noise_suffix() {  # WEIGHT NOISE
  if is_zero "$1" || [[ "$2" != absorbing ]]; then return 0; fi
  if [[ "$CDM_LOSS" == elbo ]]; then echo "_abs_elbo"; else echo "_abs"; fi
}

check_scales() {  # SCALES [NAME]: 5L, 11L or size names <L>L<d>
  local scale name="${2:-SCALES}"
  [[ -n "$1" ]] || die "$name is empty; choose from 5L 11L or sizes such as 3L96"
  for scale in $1; do
    case "$scale" in
      5L | 11L) ;;
      *) is_size_name "$scale" || die "$name: unknown scale '$scale'; choose from 5L 11L or a size <L>L<d> such as 7L384" ;;
    esac
  done
}

no_token_matching() {  # PLAN_NAME: the plans below compare at equal steps or equal clock only
  [[ "$MATCH" != tokens ]] || die "MATCH=tokens: $1 matches cells by steps or wall-clock only; use MATCH=steps (BUDGET_SECS=0) or wallclock"
}

check_list() {  # NAME VALUES KIND(number|int): every word must parse
  local v
  for v in $2; do
    if [[ "$3" == int ]]; then check_int "$1" "$v"; else check_number "$1" "$v"; fi
  done
}

plan_ablation6() {
  SCALES="${SCALES:-5L 11L}"
  WEIGHTS="${WEIGHTS:-0 0.3 1.0}"
  SEED="${SEED:-1337}"
  check_scales "$SCALES"
  [[ -n "$WEIGHTS" ]] || die "WEIGHTS is empty"
  check_list WEIGHTS "$WEIGHTS" number
  check_int SEED "$SEED"
  local scale w tok="" matched=""
  if [[ "$MATCH" == tokens ]]; then
    tok=1
    case " $WEIGHTS " in
      *" $MATCH_WEIGHT "*) ;;
      *) die "MATCH=tokens: the controls match the w=$MATCH_WEIGHT cells (MATCH_WEIGHT), but WEIGHTS='$WEIGHTS' has none" ;;
    esac
    is_zero "$MATCH_WEIGHT" && die "MATCH_WEIGHT=$MATCH_WEIGHT: the matched shared run needs a weight > 0"
  fi
  PLAN=()
  for scale in $SCALES; do
    for w in $WEIGHTS; do
      is_zero "$w" || PLAN+=("$(cell_name "$scale" "$w" "$SEED")|$scale|$w|$SEED|")
    done
    [[ -z "$tok" ]] || matched="$(cell_name "$scale" "$MATCH_WEIGHT" "$SEED")"
    for w in $WEIGHTS; do
      if is_zero "$w"; then PLAN+=("$(cell_name "$scale" "$w" "$SEED" "$tok")|$scale|$w|$SEED|$matched"); fi
    done
  done
  check_plan_unique
}

plan_seeds() {
  SEED_SCALE="${SEED_SCALE:-11L}"
  SEED_WEIGHT="${SEED_WEIGHT:-0.3}"
  SEEDS="${SEEDS:-1337 42 2024 7 100}"
  CONTROL_SEEDS="${CONTROL_SEEDS-1337 42 2024}"
  check_scales "$SEED_SCALE"
  [[ "$SEED_SCALE" != *" "* ]] || die "SEED_SCALE=$SEED_SCALE: one scale only"
  check_number SEED_WEIGHT "$SEED_WEIGHT"
  is_zero "$SEED_WEIGHT" && die "SEED_WEIGHT=$SEED_WEIGHT: the seed runs are the shared model (weight > 0)"
  check_list SEEDS "$SEEDS" int
  check_list CONTROL_SEEDS "$CONTROL_SEEDS" int
  local s tok="" matched=""
  [[ "$MATCH" == tokens ]] && tok=1
  PLAN=()
  for s in $SEEDS; do
    PLAN+=("$(cell_name "$SEED_SCALE" "$SEED_WEIGHT" "$s")|$SEED_SCALE|$SEED_WEIGHT|$s|")
  done
  for s in $CONTROL_SEEDS; do
    if [[ -n "$tok" ]]; then
      case " $SEEDS " in
        *" $s "*) matched="$(cell_name "$SEED_SCALE" "$SEED_WEIGHT" "$s")" ;;
        *) matched="$(cell_name "$SEED_SCALE" "$SEED_WEIGHT" "${SEEDS%% *}")" ;;
      esac
    fi
    PLAN+=("$(cell_name "$SEED_SCALE" 0 "$s" "$tok")|$SEED_SCALE|0|$s|$matched")
  done
  check_plan_unique
}

# The share-ratio grid (experiments/2026-12-01_share_ratio_and_scale): one scale, every weight of
# GRID_WEIGHTS at SEED. plan_wgrid_seeds then adds EXTRA_SEEDS of the control and of the best
# shared weight, read from the grid's results.json (meadow_golf.recipes.cell_status best-weight: the lowest
# final_val_bpb, the trainer's causal validation, a valid code length).
default_by_preset() {  # H100_MAC CPU SMOKE -> the one for PRESET
  case "$PRESET" in
    h100 | mac) echo "$1" ;;
    cpu) echo "$2" ;;
    *) echo "$3" ;;
  esac
}

plan_wgrid() {
  GRID_SCALE="${GRID_SCALE:-$(default_by_preset 11L 3L96 2L32)}"
  GRID_WEIGHTS="${GRID_WEIGHTS:-0 0.1 0.15 0.2 0.3 0.5 0.7 1.0}"
  SEED="${SEED:-1337}"
  EXTRA_SEEDS="${EXTRA_SEEDS-42}"
  check_scales "$GRID_SCALE" GRID_SCALE
  [[ "$GRID_SCALE" != *" "* ]] || die "GRID_SCALE=$GRID_SCALE: one scale only"
  [[ -n "$GRID_WEIGHTS" ]] || die "GRID_WEIGHTS is empty"
  check_list GRID_WEIGHTS "$GRID_WEIGHTS" number
  check_int SEED "$SEED"
  check_list EXTRA_SEEDS "$EXTRA_SEEDS" int
  no_token_matching plan_wgrid
  local w
  PLAN=()
  for w in $GRID_WEIGHTS; do
    PLAN+=("$(cell_name "$GRID_SCALE" "$w" "$SEED")|$GRID_SCALE|$w|$SEED|")
  done
  check_plan_unique
}

plan_wgrid_seeds() {  # after the grid trained: + EXTRA_SEEDS of the control and the best weight
  local entry names=() s
  for entry in "${PLAN[@]}"; do names+=("$CKPT_DIR/${entry%%|*}"); done
  BEST_WEIGHT="$(cell_py best-weight "${names[@]}")"
  echo "[plan ] best shared weight of the grid (lowest final_val_bpb): w=$BEST_WEIGHT"
  for s in $EXTRA_SEEDS; do
    [[ "$s" != "$SEED" ]] || continue
    PLAN+=("$(cell_name "$GRID_SCALE" "$BEST_WEIGHT" "$s")|$GRID_SCALE|$BEST_WEIGHT|$s|")
    PLAN+=("$(cell_name "$GRID_SCALE" 0 "$s")|$GRID_SCALE|0|$s|")
  done
  check_plan_unique
}

# The scale sweep: every size of SWEEP_SCALES, the control and every weight of SWEEP_WEIGHTS, at
# every seed of SEEDS.
plan_scale() {
  SWEEP_SCALES="${SWEEP_SCALES:-$(default_by_preset "5L256 7L384 9L448 11L512 13L640" "2L32 2L64 3L96 4L128" "2L32 3L48")}"
  SWEEP_WEIGHTS="${SWEEP_WEIGHTS:-0.3}"
  SEEDS="${SEEDS:-1337 42}"
  check_scales "$SWEEP_SCALES" SWEEP_SCALES
  [[ -n "$SWEEP_WEIGHTS" ]] || die "SWEEP_WEIGHTS is empty"
  check_list SWEEP_WEIGHTS "$SWEEP_WEIGHTS" number
  local scale s w
  for w in $SWEEP_WEIGHTS; do
    is_zero "$w" && die "SWEEP_WEIGHTS: $w is the control, which the sweep adds at every size and seed"
  done
  [[ -n "$SEEDS" ]] || die "SEEDS is empty"
  check_list SEEDS "$SEEDS" int
  no_token_matching plan_scale
  PLAN=()
  for scale in $SWEEP_SCALES; do
    for s in $SEEDS; do
      for w in $SWEEP_WEIGHTS; do
        PLAN+=("$(cell_name "$scale" "$w" "$s")|$scale|$w|$s|")
      done
      PLAN+=("$(cell_name "$scale" 0 "$s")|$scale|0|$s|")
    done
  done
  check_plan_unique
}

# The noise ablation (experiments/2026-12-01_absorbing_noise): at NOISE_SCALE, every weight of
# NOISE_WEIGHTS under every noise of NOISES, and one control (no denoising pass, so no noise).
plan_noise() {
  NOISE_SCALE="${NOISE_SCALE:-$(default_by_preset 11L 3L96 2L32)}"
  NOISE_WEIGHTS="${NOISE_WEIGHTS:-0.3 1.0}"
  NOISES="${NOISES:-uniform absorbing}"
  SEED="${SEED:-1337}"
  check_scales "$NOISE_SCALE" NOISE_SCALE
  [[ "$NOISE_SCALE" != *" "* ]] || die "NOISE_SCALE=$NOISE_SCALE: one scale only"
  [[ -n "$NOISE_WEIGHTS" ]] || die "NOISE_WEIGHTS is empty"
  check_list NOISE_WEIGHTS "$NOISE_WEIGHTS" number
  [[ -n "$NOISES" ]] || die "NOISES is empty"
  local n w
  for n in $NOISES; do check_noise NOISES "$n"; done
  check_int SEED "$SEED"
  no_token_matching plan_noise
  PLAN=()
  for n in $NOISES; do
    for w in $NOISE_WEIGHTS; do
      is_zero "$w" && die "NOISE_WEIGHTS: $w is the control, which the plan adds once"
      PLAN+=("$(cell_name "$NOISE_SCALE" "$w" "$SEED")$(noise_suffix "$w" "$n")|$NOISE_SCALE|$w|$SEED||$n")
    done
  done
  PLAN+=("$(cell_name "$NOISE_SCALE" 0 "$SEED")|$NOISE_SCALE|0|$SEED||")
  check_plan_unique
}

check_plan_unique() {  # two plan entries for one cell (a weight or seed listed twice)
  local names
  names="$(plan_names | tr ' ' '\n' | sed '/^$/d')"
  [[ "$(printf '%s\n' "$names" | sort | uniq -d)" == "" ]] ||
    die "a cell is planned twice ($(printf '%s\n' "$names" | sort | uniq -d | tr '\n' ' ')): a weight or seed is listed twice"
}

plan_scales() {  # the plan's scales, each once, in plan order
  local entry scale seen=" "
  for entry in "${PLAN[@]}"; do
    scale="$(printf '%s\n' "$entry" | cut -d'|' -f2)"
    case "$seen" in
      *" $scale "*) ;;
      *) seen="$seen$scale " && printf '%s ' "$scale" ;;
    esac
  done
  echo
}

plan_names() {
  local entry
  for entry in "${PLAN[@]}"; do printf '%s ' "${entry%%|*}"; done
  echo
}

# ----------------------------------------------------------------------------- the table

print_recipe() {  # TITLE
  local budget="${BUDGET_SECS} s" cap="$STEPS" scale
  is_zero "$BUDGET_SECS" && budget="none"
  [[ "$STEPS" == 0 ]] && cap="none"
  echo "== $1: PRESET=$PRESET BACKEND=$BACKEND MATCH=$MATCH DEVICE=$DEVICE NPROC=$NPROC COMPILE=$COMPILE FUSE_PASSES=$FUSE_PASSES THREADS=${THREADS:-default}"
  printf '  %-6s %-36s %s\n' "scale" "original ablation model" "trains with (PRESET=$PRESET)"
  for scale in $(plan_scales); do
    printf '  %-6s %-36s %s\n' "$scale" "$(spec_scale "$scale")" "$(scale_flags "$scale")"
  done
  printf '  %-6s %s\n' "train" "$(basename "$TRAINER") ${TRAIN_FLAGS[*]}; budget per cell: $budget; step cap: $cap"
  if [[ "$MATCH" == tokens ]]; then
    printf '  %-6s %s\n' "match" "controls (w=0, suffix _tok): --steps tokens_seen(matched shared cell)/$BATCH_TOKENS --train_budget_secs 0"
  elif [[ "$MATCH" == steps ]]; then
    printf '  %-6s %s\n' "match" "steps: no clock (BUDGET_SECS=0); every cell trains for the step cap $STEPS"
  else
    printf '  %-6s %s\n' "match" "wall-clock: every cell gets the same budget / step cap"
  fi
  printf '  %-6s %s\n' "eval" "eval_cf.py --backend $BACKEND ${EVAL_FLAGS[*]} (final_model.npz of each cell)"
  printf '  %-6s %s\n' "data" "DATA_DIR=$DATA_DIR TOKENIZER=${TOKENIZER:-(from meta.json)}"
  printf '  %-6s %s\n' "dirs" "CKPT_DIR=$CKPT_DIR"
  printf '  %-6s %s\n' "" "LOG_DIR=$LOG_DIR"
  printf '  %-6s %s\n' "" "OUT_DIR=$OUT_DIR"
  printf '  %-6s %s\n' "cells" "$(plan_names)"
}

# ----------------------------------------------------------------------------- running

# The command of a cell runs in the background so that the recipe can print a heartbeat (a cell
# is minutes of silence otherwise). While it runs, SIGTERM to the recipe (a pod's stop reaches
# only the main process) is passed on to it, and the recipe waits for it to checkpoint and exit,
# so train_cell still ends with `[stop ]` and 143. SIGINT is not passed on: Ctrl-C already
# reaches the whole process group, and a second SIGINT makes the trainer quit without a
# checkpoint; the recipe only keeps waiting. `wait PID` returns the command's exit status.
RUNNING_PID=""
forward_term() { [[ -z "$RUNNING_PID" ]] || kill -TERM "$RUNNING_PID" 2>/dev/null || true; }

run_logged() {  # LOG NAME CMD...: CMD's stdout+stderr appended to LOG (and shown with VERBOSE=1)
  local log="$1" name="$2" rc=0 start=$SECONDS next last
  shift 2
  mkdir -p "$(dirname "$log")"
  echo "### $(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$log"
  if [[ "$VERBOSE" == 1 ]]; then
    "$@" 2>&1 | tee -a "$log" || rc=$?
    return "$rc"
  fi
  "$@" >>"$log" 2>&1 &
  RUNNING_PID=$!
  trap forward_term TERM
  trap : INT
  next=$((start + HEARTBEAT_SECS))
  # kill -0 fails once bash has reaped the finished command (it keeps the status for wait).
  while kill -0 "$RUNNING_PID" 2>/dev/null; do
    sleep 0.2
    if [[ "$HEARTBEAT_SECS" != 0 && $SECONDS -ge $next ]] && kill -0 "$RUNNING_PID" 2>/dev/null; then
      last="$(tail -n 1 "$log" | tr -d '\r' | cut -c1-160)"
      echo "[beat ] $name: $((SECONDS - start)) s in; log: $last"
      next=$((next + HEARTBEAT_SECS))
    fi
  done
  wait "$RUNNING_PID" || rc=$?
  trap - TERM INT
  RUNNING_PID=""
  return "$rc"
}

# Overall progress: `[plan ] <what> cell K/N` before each cell, with the time since the loop
# began and an ETA: the cells left times the mean time of the cells that actually ran (a cell
# skipped as done costs nothing, so the ETA errs high when later cells are skipped too). Before
# any has run, training uses the budget per cell (a lower bound: saves and the final validation
# come on top) and evaluation has no estimate yet.
PLAN_T0=0 PLAN_RAN=0 PLAN_RAN_SECS=0 CELL_RAN=0
plan_progress() {  # WHAT K N NAME FALLBACK_SECS_PER_CELL
  local left=$(($3 - $2 + 1)) eta
  if [[ "$PLAN_RAN" -gt 0 ]]; then
    eta="eta $((left * PLAN_RAN_SECS / PLAN_RAN)) s ($left cells left at the mean of the $PLAN_RAN run so far)"
  elif [[ "$5" != 0 ]]; then
    eta="eta >= $((left * $5)) s ($left cells left at the budget of $5 s each)"
  else
    eta="eta unknown until a cell has run"
  fi
  echo "[plan ] $1 cell $2/$3 $4; elapsed $((SECONDS - PLAN_T0)) s; $eta"
}

plan_cell_done() {  # START_SECONDS: count a cell that ran (not skipped) into the mean
  if [[ "$CELL_RAN" == 1 ]]; then
    PLAN_RAN=$((PLAN_RAN + 1))
    PLAN_RAN_SECS=$((PLAN_RAN_SECS + SECONDS - $1))
  fi
  CELL_RAN=0
}

fail_with_log() {  # WHAT RC LOG
  echo "error: $1 failed (exit status $2); last lines of $3:" >&2
  tail -n 5 "$3" >&2
  exit "$2"
}

rule_flags() {  # STEPS BUDGET_SECS -> the original's warmdown rules scaled to this cell's length
  awk -v steps="$1" -v budget="$2" 'BEGIN {
    printf "--warmdown_steps %d --warmdown_secs %.6g\n", int(steps * 1000 / 9999 + 0.5), budget * 80 / 540 }'
}

train_cell() {  # NAME SCALE WEIGHT SEED MATCHED_TO [NOISE]
  local name="$1" scale="$2" weight="$3" seed="$4" matched="$5" noise="${6:-$NOISE}"
  local cell="$CKPT_DIR/$name" log="$LOG_DIR/$name.train.log" status steps="" rc=0
  local recipe
  # shellcheck disable=SC2206  # the preset's model flags are plain words
  recipe=($(scale_flags "$scale") "${TRAIN_FLAGS[@]}" --cdm_weight "$weight" --seed "$seed")
  # Only a departure from the trainer's default (uniform, plain) enters the recipe, so the cells
  # of earlier runs keep their recipe; a control has no denoising pass to corrupt.
  if ! is_zero "$weight" && [[ "$noise" == absorbing ]]; then
    recipe+=(--noise absorbing)
    [[ "$CDM_LOSS" == plain ]] || recipe+=(--cdm_loss "$CDM_LOSS")
  fi
  if [[ -n "$matched" ]]; then
    steps="$(cell_py match-steps "$CKPT_DIR/$matched" --batch_tokens "$BATCH_TOKENS")"
    # shellcheck disable=SC2207  # two flags and their numbers
    recipe+=(--train_budget_secs 0 --steps "$steps" $(rule_flags "$steps" 0))
  else
    # shellcheck disable=SC2207
    recipe+=(--train_budget_secs "$BUDGET_SECS" --steps "$STEPS" $(rule_flags "$STEPS" "$BUDGET_SECS"))
  fi
  status="$(cell_py train-status "$cell")"
  cell_py claim "$cell" --name "$name" --scale "$scale" --backend "$BACKEND" --preset "$PRESET" \
    --match "$MATCH" --matched_to "$matched" -- "${recipe[@]}" >/dev/null
  if [[ "$status" == done ]]; then
    cell_py train-line "$cell" --prefix "[skip ]"
    return 0
  fi
  if [[ -f "$cell/eval_cf.json" ]]; then
    rm -f "$cell/eval_cf.json"  # it scored the previous model of this cell
  fi
  echo "[start] $name: ${status/partial/resuming from its newest step checkpoint}${steps:+, token-matched to $matched ($steps steps)}; log $log"
  local io=("${IO_FLAGS[@]}" --data_dir "$DATA_DIR" --checkpoint_dir "$cell" --device "$DEVICE" --resume auto)
  [[ "$COMPILE" == 1 ]] && io+=(--compile)
  [[ "$FUSE_PASSES" == 1 ]] && io+=(--fuse_passes)
  local launch=("$PYTHON")
  [[ "$NPROC" == 1 ]] || launch+=(-m torch.distributed.run --standalone "--nproc_per_node=$NPROC")
  CELL_RAN=1
  run_logged "$log" "$name" "${launch[@]}" "$TRAINER" "${recipe[@]}" "${io[@]}" ${TOKENIZER_FLAGS[@]+"${TOKENIZER_FLAGS[@]}"} || rc=$?
  [[ "$rc" == 0 ]] || fail_with_log "training $name" "$rc" "$log"
  if [[ ! -f "$cell/results.json" ]]; then
    # The trainer took SIGTERM/SIGINT: it saved a step checkpoint and exited 0 without finishing.
    echo "[stop ] $name: stopped by a signal after a step checkpoint; rerun the same command to resume" >&2
    exit 143
  fi
  cell_py train-line "$cell" --prefix "[done ]"
}

eval_cell() {  # NAME
  local name="$1" cell="$CKPT_DIR/$1" log="$LOG_DIR/$1.eval.log" status rc=0 elbo=()
  # The ELBO is a bound only for a model with a mask token: the absorbing cells (not their control).
  if [[ "$ELBO_SAMPLES" != 0 && "$name" == *_abs* ]]; then elbo=(--elbo_samples "$ELBO_SAMPLES"); fi
  status="$(cell_py eval-status "$cell" --seq_len "$EVAL_SEQ_LEN" --n_seqs "$EVAL_N_SEQS" --decoders "$DECODERS" \
    ${elbo[@]+"${elbo[@]}"})"
  if [[ "$status" == done ]]; then
    cell_py eval-line "$cell" --prefix "[skip ]"
    return 0
  fi
  [[ "$status" == stale ]] && echo "[stale] $name: eval_cf.json predates results.json or used another protocol; evaluating again"
  echo "[start] eval $name; log $log"
  CELL_RAN=1
  run_logged "$log" "$name" "$PYTHON" "$EXP_DIR/eval_cf.py" --checkpoint "$cell/final_model.npz" --data_dir "$DATA_DIR" \
    "${EVAL_FLAGS[@]}" ${elbo[@]+"${elbo[@]}"} --backend "$BACKEND" --device "$DEVICE" --json_out "$cell/eval_cf.json" \
    ${TOKENIZER_FLAGS[@]+"${TOKENIZER_FLAGS[@]}"} || rc=$?
  if [[ "$rc" == 2 && -f "$cell/eval_cf.json" ]]; then
    mv "$cell/eval_cf.json" "$cell/eval_cf.failed.json"  # not "done": a rerun evaluates again
    fail_with_log "eval $name: the ar decoder disagrees with the trainer's validation (see $cell/eval_cf.failed.json)" "$rc" "$log"
  fi
  [[ "$rc" == 0 ]] || fail_with_log "evaluating $name" "$rc" "$log"
  cell_py eval-line "$cell" --prefix "[done ]"
}

train_plan() {
  local entry name scale weight seed matched noise
  if [[ "$BACKEND" == mlx ]]; then
    "$PYTHON" -c "import mlx.core" 2>/dev/null || die "BACKEND=mlx: the mlx package is not importable (pip install -e '.[mlx]')"
  fi
  local k=0 t budget=0
  [[ -n "$MATCH" && "$MATCH" != wallclock ]] || budget="${BUDGET_SECS%%.*}"
  PLAN_T0=$SECONDS PLAN_RAN=0 PLAN_RAN_SECS=0
  for entry in "${PLAN[@]}"; do
    IFS='|' read -r name scale weight seed matched noise <<<"$entry"
    k=$((k + 1)) t=$SECONDS
    plan_progress train "$k" "${#PLAN[@]}" "$name" "$budget"
    train_cell "$name" "$scale" "$weight" "$seed" "$matched" "$noise"
    plan_cell_done "$t"
  done
}

eval_plan() {
  local entry k=0 t
  PLAN_T0=$SECONDS PLAN_RAN=0 PLAN_RAN_SECS=0
  for entry in "${PLAN[@]}"; do
    k=$((k + 1)) t=$SECONDS
    plan_progress eval "$k" "${#PLAN[@]}" "${entry%%|*}" 0
    eval_cell "${entry%%|*}"
    plan_cell_done "$t"
  done
}

summarize_plan() {  # TITLE: scripts/summarize.py over the plan's finished cells -> OUT_DIR
  local entry name files=()
  for entry in "${PLAN[@]}"; do
    name="${entry%%|*}"
    if [[ -f "$CKPT_DIR/$name/results.json" ]]; then files+=("$CKPT_DIR/$name/results.json"); fi
  done
  [[ "${#files[@]}" -gt 0 ]] || die "no finished cells to summarize in $CKPT_DIR"
  echo "== summary (scripts/summarize.py -> $OUT_DIR)"
  # --floor_meta: on a synthetic corpus (its meta.json knows the exact entropy rate) every code is
  # set against that floor; a natural corpus's meta.json has none and adds nothing.
  "$PYTHON" "$ROOT/scripts/summarize.py" --out_dir "$OUT_DIR" --title "$1" --floor_meta "$DATA_DIR/meta.json" "${files[@]}"
  if [[ -n "$COMPARE_TO" ]]; then
    echo "== this run beside the record COMPARE_TO=$COMPARE_TO"
    "$PYTHON" "$ROOT/scripts/compare_record.py" "$OUT_DIR/results.json" "$COMPARE_TO"
  fi
}
