"""The retrodiction A/B recipe runs end to end in a smoke configuration and is idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "2026-04-07_retrodiction_research_diary" / "run_ab.sh"


def run_ab(data_dir, out_dir):
    env = {**os.environ, "DATA_DIR": str(data_dir), "OUT_DIR": str(out_dir), "STEPS": "3", "SEQ_LEN": "32",
           "BATCH_TOKENS": "256", "RETRO_ALPHA": "0.5", "PYTHON": sys.executable,
           "MODEL_FLAGS": "--num_layers 2 --model_dim 32 --num_heads 4 --num_kv_heads 2 --bigram_dim 16 --xsa_last_n 1"}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)


def test_ab_smoke_and_rerun(shakespeare_data, tmp_path):
    first = run_ab(shakespeare_data, tmp_path)
    assert first.returncode == 0, first.stderr
    ab = json.loads((tmp_path / "ab.json").read_text())
    assert ab["A"]["retro_alpha"] == 0 and ab["B"]["retro_alpha"] == 0.5
    assert ab["A"]["steps"] == ab["B"]["steps"] == 3
    # The delta recomputed from the two trainer runs' own results.json, not from ab.json's arms.
    arm_a = json.loads((tmp_path / "retro_0" / "results.json").read_text())
    arm_b = json.loads((tmp_path / "retro_0.5" / "results.json").read_text())
    assert ab["delta_bpb_B_minus_A"] == arm_b["final_val_bpb"] - arm_a["final_val_bpb"]
    log_b = (tmp_path / "retro_0.5" / "train.log").read_text()
    assert "retro_alpha:0.5 passes_per_step:2" in log_b
    mtime = (tmp_path / "retro_0" / "results.json").stat().st_mtime_ns
    second = run_ab(shakespeare_data, tmp_path)
    assert second.returncode == 0 and second.stdout.count("[skip ]") == 2
    assert (tmp_path / "retro_0" / "results.json").stat().st_mtime_ns == mtime


def test_missing_data_dir_is_one_error_line(tmp_path):
    res = run_ab(tmp_path / "nope", tmp_path / "out")
    assert res.returncode == 1 and res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1
