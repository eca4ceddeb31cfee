#!/usr/bin/env bash
# Audit of the original's published numbers on its own hub checkpoints, for a GPU pod:
#   1. fetch the original's checkpoints, tokenizer and v4096 validation shard
#      (scripts/fetch_original.py; the hub layout is inferred, see its docstring);
#   2. score every fetched checkpoint twice with eval_cf.py:
#      original  --protocol original: the published protocol (experiments/METHOD.md §5), whose
#                CF number is NOT a valid code length (experiments/METHOD.md §6);
#      shared    --protocol shared --decoders ar,cf_valid,cf_bidir_skeleton: the valid decoders
#                on one set of windows shared by every checkpoint;
#   3. write one table, OUT_DIR/audit_table.{md,json} (audit_table.py, from the JSON only).
#
#   bash experiments/2026-04-09_matched_ablation/audit_original.sh
#   OUT_DIR=runs/audit_original/first bash experiments/2026-04-09_matched_ablation/audit_original.sh   # resume
#
# Environment (defaults in brackets):
#   N_SEQS [500]      windows per protocol (the original: 500)
#   SEQ_LEN [1024]    targets per window (the original: 1024)
#   SEED [42]         window / fill seed (the original: 42)
#   DEVICE [auto]     auto | cuda | mps | cpu
#   OUT_DIR [runs/audit_original/<UTC time>]  a fresh folder per run unless given; rerun with the
#                     same OUT_DIR to resume: a cell whose JSON exists is skipped
#   FETCH_DIR [$OUT_DIR/original]  where fetch_original.py lays out checkpoints/, data/, manifest.json
#   CACHE_DIR []      Hugging Face hub cache (default HF_HUB_CACHE / HF_HOME); HF_HUB_OFFLINE=1
#                     fetches from the cache only
#   DECODERS [ar,cf_valid,cf_bidir_skeleton]  decoders of the shared protocol
#   ARCH_5L [--original_arch 5L]  ARCH_11L [--original_arch 11L]  how eval_cf.py builds the
#                     original architecture from a checkpoint of each scale (tests give tiny
#                     stand-ins another flag, e.g. --xsa_last_n 1)
#   PYTHON [python]   interpreter with the project installed
# Per cell: OUT_DIR/cells/<tag>.<protocol>.json and, next to it, <tag>.<protocol>.log.
set -euo pipefail

EXP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$EXP_DIR/../.." && pwd)"

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

N_SEQS="${N_SEQS:-500}"
SEQ_LEN="${SEQ_LEN:-1024}"
SEED="${SEED:-42}"
DEVICE="${DEVICE:-auto}"
OUT_DIR="$(abs_path "${OUT_DIR:-$ROOT/runs/audit_original/$(date -u +%Y%m%dT%H%M%SZ)}")"
FETCH_DIR="$(abs_path "${FETCH_DIR:-$OUT_DIR/original}")"
CACHE_DIR="${CACHE_DIR:-}"
DECODERS="${DECODERS:-ar,cf_valid,cf_bidir_skeleton}"
ARCH_5L="${ARCH_5L:---original_arch 5L}"
ARCH_11L="${ARCH_11L:---original_arch 11L}"
PYTHON="${PYTHON:-python}"

[[ "$N_SEQS" =~ ^[1-9][0-9]*$ ]] || die "N_SEQS=$N_SEQS: expected a positive integer"
[[ "$SEQ_LEN" =~ ^[1-9][0-9]*$ ]] || die "SEQ_LEN=$SEQ_LEN: expected a positive integer"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "SEED=$SEED: expected a non-negative integer"
case "$DEVICE" in
  auto | cuda | mps | cpu) ;;
  *) die "DEVICE=$DEVICE: choose auto, cuda, mps or cpu" ;;
esac

# Dependencies first, so a pod without them stops before a long download.
command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON: not found (activate the project's venv or set PYTHON)"
missing="$("$PYTHON" -c 'import importlib.util as u; print(" ".join(m for m in ("torch", "numpy", "sentencepiece", "huggingface_hub") if u.find_spec(m) is None))')"
[[ -z "$missing" ]] || die "missing Python packages: $missing; get them with: pip install -e '.[torch]' in $ROOT (or pip install torch numpy sentencepiece huggingface_hub)"
# The flags are defined in the package module; $EXP_DIR/eval_cf.py only calls its main().
EVAL_CF_CODE="$ROOT/scripts/meadow_golf/eval/eval_cf.py"
grep -q -- '--original_arch' "$EVAL_CF_CODE" && grep -q -- '--protocol' "$EVAL_CF_CODE" ||
  die "$EVAL_CF_CODE has no --original_arch / --protocol flags; this recipe needs the evaluator that scores the original's checkpoints"

# The settings of a folder are fixed at its first run: a resumed run must not mix protocols.
mkdir -p "$OUT_DIR/cells"
settings="{\"n_seqs\": $N_SEQS, \"seq_len\": $SEQ_LEN, \"seed\": $SEED, \"decoders\": \"$DECODERS\", \"arch_5l\": \"$ARCH_5L\", \"arch_11l\": \"$ARCH_11L\"}"
if [[ -f "$OUT_DIR/settings.json" ]]; then
  [[ "$(cat "$OUT_DIR/settings.json")" == "$settings" ]] ||
    die "OUT_DIR=$OUT_DIR was started with other settings ($(cat "$OUT_DIR/settings.json")); use a fresh OUT_DIR"
else
  printf '%s\n' "$settings" >"$OUT_DIR/settings.json.tmp"
  mv "$OUT_DIR/settings.json.tmp" "$OUT_DIR/settings.json"
fi

echo "== audit_original: N_SEQS=$N_SEQS SEQ_LEN=$SEQ_LEN SEED=$SEED DEVICE=$DEVICE"
echo "   OUT_DIR=$OUT_DIR (rerun with this OUT_DIR to resume)"
echo "   FETCH_DIR=$FETCH_DIR"

echo "== fetch (scripts/fetch_original.py)"
fetch=(--out "$FETCH_DIR" --what all)
[[ -z "$CACHE_DIR" ]] || fetch+=(--cache-dir "$CACHE_DIR")
"$PYTHON" "$ROOT/scripts/fetch_original.py" "${fetch[@]}"

CKPT_DIR="$FETCH_DIR/checkpoints"
DATA_DIR="$FETCH_DIR/data"
TOKENIZER="$DATA_DIR/bpe_v4096.model"
# The six ablation checkpoints are required (fetch_original.py fails without them); the seed
# runs are scored where the hub had them.
CELLS=()
for tag in 5L_w0 5L_w03 5L_w1 11L_w0 11L_w03 11L_w1 \
  11L_w03_s1337 11L_w03_s42 11L_w03_s2024 11L_w03_s7 11L_w03_s100 11L_w0_s1337; do
  if [[ -f "$CKPT_DIR/$tag.npz" ]]; then CELLS+=("$tag original" "$tag shared"); fi
done
[[ "${#CELLS[@]}" -ge 12 ]] || die "$CKPT_DIR: fewer than the six ablation checkpoints"

echo "== score: ${#CELLS[@]} cells (each checkpoint under the original and the shared protocol)"
start=$SECONDS
ran=0
ran_seconds=0
k=0
for cell in "${CELLS[@]}"; do
  k=$((k + 1))
  read -r tag protocol <<<"$cell"
  json="$OUT_DIR/cells/$tag.$protocol.json"
  log="$OUT_DIR/cells/$tag.$protocol.log"
  if [[ -f "$json" ]]; then
    echo "[cell $k/${#CELLS[@]}] $tag $protocol: skip, $json exists"
    continue
  fi
  remaining=$((${#CELLS[@]} - k + 1))
  eta="unknown"
  [[ "$ran" == 0 ]] || eta="$((ran_seconds * remaining / ran)) s"
  echo "[cell $k/${#CELLS[@]}] $tag $protocol: start; elapsed $((SECONDS - start)) s, ETA $eta; log $log"
  case "$tag" in
    5L_*) arch="$ARCH_5L" ;;
    *) arch="$ARCH_11L" ;;
  esac
  args=(--checkpoint "$CKPT_DIR/$tag.npz" --data_dir "$DATA_DIR" --tokenizer_path "$TOKENIZER"
    --n_seqs "$N_SEQS" --seq_len "$SEQ_LEN" --seed "$SEED" --device "$DEVICE" --json_out "$json")
  if [[ "$protocol" == original ]]; then
    args+=(--protocol original)
  else
    args+=(--protocol shared --decoders "$DECODERS")
  fi
  t0=$SECONDS
  rc=0
  # shellcheck disable=SC2086  # ARCH_* are flag words
  "$PYTHON" "$EXP_DIR/eval_cf.py" "${args[@]}" $arch >"$log" 2>&1 || rc=$?
  if [[ "$rc" != 0 ]]; then
    # A JSON written by a failed run (eval_cf.py exit 2: a check failed) must not count as done.
    if [[ -f "$json" ]]; then mv "$json" "${json%.json}.failed.json"; fi
    echo "error: eval_cf.py on $tag ($protocol protocol) failed (exit status $rc); last lines of $log:" >&2
    tail -n 5 "$log" >&2
    exit "$rc"
  fi
  ran=$((ran + 1))
  ran_seconds=$((ran_seconds + SECONDS - t0))
  echo "[cell $k/${#CELLS[@]}] $tag $protocol: done in $((SECONDS - t0)) s; elapsed $((SECONDS - start)) s"
done

echo "== table (audit_table.py -> $OUT_DIR/audit_table.md, .json)"
"$PYTHON" "$EXP_DIR/audit_table.py" --manifest "$FETCH_DIR/manifest.json" --cells_dir "$OUT_DIR/cells" --out_dir "$OUT_DIR"
