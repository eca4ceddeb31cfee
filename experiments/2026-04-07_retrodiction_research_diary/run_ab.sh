#!/usr/bin/env bash
# The retrodiction A/B (METHOD.md §7, the research line before the shared AR + D3PM model):
# a pure causal model (cdm_weight 0) trained with and without the reversed-sequence auxiliary loss
#     loss = CE(model(x), x) + RETRO_ALPHA * CE(model(flip(x)), flip(x))
# for the same number of steps, then Pure-AR val_bpb of each (a valid code length).
#
# Environment (defaults in brackets):
#   DATA_DIR [data/shakespeare]  prepared folder (scripts/prepare_data.py)
#   OUT_DIR [runs/retrodiction_ab]  one run folder per arm + ab.json. The committed record
#                 (this folder's cpu_ab/) is never the default: a rerun must not find it "done".
#   COMPARE_TO [this folder/cpu_ab]  a record's folder (or ab.json) printed beside the rerun's numbers
#                 (scripts/compare_record.py); "" for none
#   RETRO_ALPHA [0.5]  weight of the reversed loss in the B arm (A arm: 0)
#   STEPS [120]  BATCH_TOKENS [4096]  SEQ_LEN [256]  SEED [1337]  DEVICE [cpu]  THREADS [1]
#   MODEL_FLAGS [--num_layers 3 --model_dim 128 --bigram_dim 64 --xsa_last_n 1]  (the cpu "5L" scale)
#   PYTHON [python]  interpreter with the project installed (scripts/venv.sh)
# Idempotent: a finished arm (results.json present) is skipped; an interrupted one resumes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TRAINER="$ROOT/experiments/2026-04-09_matched_ablation/train_cdm.py"
DATA_DIR="${DATA_DIR:-$ROOT/data/shakespeare}"
OUT_DIR="${OUT_DIR:-$ROOT/runs/retrodiction_ab}"
COMPARE_TO="${COMPARE_TO-$HERE/cpu_ab}"
RETRO_ALPHA="${RETRO_ALPHA:-0.5}"
STEPS="${STEPS:-120}" BATCH_TOKENS="${BATCH_TOKENS:-4096}" SEQ_LEN="${SEQ_LEN:-256}"
SEED="${SEED:-1337}" DEVICE="${DEVICE:-cpu}" PYTHON="${PYTHON:-python}"
MODEL_FLAGS="${MODEL_FLAGS:---num_layers 3 --model_dim 128 --bigram_dim 64 --xsa_last_n 1}"
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}"

command -v "$PYTHON" >/dev/null 2>&1 || { echo "error: PYTHON=$PYTHON: not found (activate the project's venv or set PYTHON)" >&2; exit 1; }
# This checkout's shared library first (a fresh clone runs its own code), then its modules checked.
export PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" "$ROOT/scripts/python_deps.py" torch numpy sentencepiece --python_label "PYTHON=$PYTHON" || exit 1
[[ -d "$DATA_DIR" ]] || { echo "error: DATA_DIR=$DATA_DIR does not exist (python scripts/prepare_data.py shakespeare --out $DATA_DIR)" >&2; exit 1; }
[[ -z "$COMPARE_TO" || -e "$COMPARE_TO" ]] || { echo "error: COMPARE_TO=$COMPARE_TO does not exist (a record folder with ab.json, or \"\" for none)" >&2; exit 1; }
mkdir -p "$OUT_DIR"
for arm in "A 0" "B $RETRO_ALPHA"; do
  set -- $arm
  run="$OUT_DIR/retro_$2"
  if [[ -f "$run/results.json" ]]; then
    echo "[skip ] arm $1 (retro_alpha $2): $run/results.json exists"
    continue
  fi
  echo "[start] arm $1 (retro_alpha $2) -> $run"
  # shellcheck disable=SC2086
  "$PYTHON" "$TRAINER" $MODEL_FLAGS --cdm_weight 0 --retro_alpha "$2" --seq_len "$SEQ_LEN" \
    --batch_tokens "$BATCH_TOKENS" --steps "$STEPS" --train_budget_secs 0 --seed "$SEED" \
    --warmdown_steps "$(( (STEPS * 1000 + 4999) / 9999 ))" \
    --val_every 0 --val_tokens 65536 --save_every 40 --log_every 20 --device "$DEVICE" \
    --data_dir "$DATA_DIR" --checkpoint_dir "$run" --resume auto > "$OUT_DIR/retro_$2.log" 2>&1
done
"$PYTHON" - "$OUT_DIR" "$RETRO_ALPHA" <<'PY'
import json, sys
from pathlib import Path
out, alpha = Path(sys.argv[1]), sys.argv[2]
arms = {name: json.loads((out / f"retro_{a}" / "results.json").read_text()) for name, a in (("A", "0"), ("B", alpha))}
summary = {name: {"retro_alpha": r["config"]["train"]["retro_alpha"], "steps": r["steps"],
                  "tokens_seen": r["tokens_seen"], "train_seconds": r["train_seconds"],
                  "pure_ar_val_bpb": r["final_val_bpb"]} for name, r in arms.items()}
summary["delta_bpb_B_minus_A"] = summary["B"]["pure_ar_val_bpb"] - summary["A"]["pure_ar_val_bpb"]
(out / "ab.json").write_text(json.dumps(summary, indent=2) + "\n")
for name in ("A", "B"):
    s = summary[name]
    print(f"arm:{name} retro_alpha:{s['retro_alpha']} steps:{s['steps']} train_s:{s['train_seconds']:.0f} "
          f"pure_ar_val_bpb:{s['pure_ar_val_bpb']:.4f} (valid code length)")
print(f"delta_bpb(B-A):{summary['delta_bpb_B_minus_A']:+.4f}")
PY
# The committed record beside the rerun, unless the rerun is the record itself.
record_dir="$COMPARE_TO"
[[ -z "$record_dir" || -d "$record_dir" ]] || record_dir="$(dirname "$record_dir")"
if [[ -n "$record_dir" && "$(cd "$OUT_DIR" && pwd -P)" != "$(cd "$record_dir" && pwd -P)" ]]; then
  "$PYTHON" "$ROOT/scripts/compare_record.py" "$OUT_DIR/ab.json" "$COMPARE_TO"
fi
