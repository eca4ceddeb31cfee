#!/usr/bin/env bash
# bench_gpu.sh: the GPU rows of the performance table, in one unattended call on a CUDA machine.
#
#   1. benchmark.py at the H100 recipe's shapes (vocab 4096, seq 1024, 64 x 1024 tokens per step),
#      compiled: 11L then 5L, steps ar / joint / joint_fused, and eval_cf's decoder loop on
#      500 x 1024 windows (all decoders).
#   2. (if DATA_DIR holds a prepared folder) a short real run of train_cdm.py at 11L with --compile
#      --fuse_passes, then eval_cf.py on its checkpoint: the trainer's and evaluator's own CUDA path.
#
# Environment (defaults in brackets):
#   OUT [runs/bench_gpu]   where bench_cuda.json / .log, train/, eval_cf.json go
#   PYTHON [python]        an interpreter with torch + numpy + sentencepiece (the repo on PYTHONPATH is set here)
#   DATA_DIR [data/shakespeare]  prepared folder for stage 2 (skipped if missing)
#   TRAIN_SECS [45]        stage 2's wall-clock budget
#   STAGES [bench11 cf train bench5]   which stages, in this order
set -euo pipefail

EXP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$EXP_DIR/../.." && pwd)"
PYTHON="${PYTHON:-python}"
OUT="${OUT:-$ROOT/runs/bench_gpu}"
DATA_DIR="${DATA_DIR:-$ROOT/data/shakespeare}"
TRAIN_SECS="${TRAIN_SECS:-45}"
STAGES="${STAGES:-bench11 cf train bench5}"
export PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
BENCH=("$PYTHON" "$EXP_DIR/benchmark.py" --compile on --device cuda --steps 20 --warmup 4)

for stage in $STAGES; do
  echo "== stage $stage (t=${SECONDS}s)"
  case "$stage" in
    bench11) "${BENCH[@]}" --scales 11L --cf_windows 0 --json_out "$OUT/bench_cuda_11L.json" 2>&1 | tee "$OUT/bench_cuda_11L.log" ;;
    bench5) "${BENCH[@]}" --scales 5L --cf_windows 0 --json_out "$OUT/bench_cuda_5L.json" 2>&1 | tee "$OUT/bench_cuda_5L.log" ;;
    cf) "${BENCH[@]}" --modes "" --compile off --cf_scales 11L,5L \
          --json_out "$OUT/bench_cuda_cf.json" 2>&1 | tee "$OUT/bench_cuda_cf.log" ;;
    train)
      if [[ ! -f "$DATA_DIR/meta.json" ]]; then
        echo "skip: no prepared folder at $DATA_DIR"
        continue
      fi
      "$PYTHON" "$EXP_DIR/train_cdm.py" --data_dir "$DATA_DIR" --checkpoint_dir "$OUT/train" \
        --num_layers 11 --model_dim 512 --bigram_dim 128 --xsa_last_n 4 --seq_len 1024 --batch_tokens 65536 \
        --train_budget_secs "$TRAIN_SECS" --cdm_weight 0.3 --compile --fuse_passes \
        --val_every 0 --save_every 0 --log_every 25 --val_tokens 131072 2>&1 | tail -n 12
      cp "$OUT/train/results.json" "$OUT/train_results.json"
      "$PYTHON" "$EXP_DIR/eval_cf.py" --checkpoint "$OUT/train/final_model.npz" --data_dir "$DATA_DIR" \
        --n_seqs 500 --seq_len 1024 --json_out "$OUT/eval_cf.json" 2>&1 | grep -v "^progress" | tail -n 12
      rm -f "$OUT/train/"*.pt "$OUT/train/"*.npz "$OUT/train/"*.lzma  # keep logs and JSON only
      ;;
    *) echo "error: unknown stage $stage" >&2; exit 1 ;;
  esac
done
echo "== done (t=${SECONDS}s)"
