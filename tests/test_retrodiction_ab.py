"""The retrodiction A/B recipe (run_ab.sh -> the diary's plan.py) in a smoke configuration, in this
process: both arms, ab.json from their results.json, idempotent on a rerun."""

from __future__ import annotations

import json

from recipe_run import recipe

TINY = "--num_layers 2 --model_dim 32 --num_heads 4 --num_kv_heads 2 --bigram_dim 16 --xsa_last_n 1"


def run_ab(data_dir, out_dir, check=True):
    return recipe("retrodiction", "run_ab", check, DATA_DIR=str(data_dir), OUT_DIR=str(out_dir), STEPS="3",
                  SEQ_LEN="32", BATCH_TOKENS="256", RETRO_ALPHA="0.5", MODEL_FLAGS=TINY)


def test_ab_smoke_and_rerun(shakespeare_data, tmp_path):
    first = run_ab(shakespeare_data, tmp_path)
    ab = json.loads((tmp_path / "ab.json").read_text())
    assert ab["A"]["retro_alpha"] == 0 and ab["B"]["retro_alpha"] == 0.5
    assert ab["A"]["steps"] == ab["B"]["steps"] == 3
    # The delta recomputed from the two trainer runs' own results.json, not from ab.json's arms.
    arm_a = json.loads((tmp_path / "retro_0" / "results.json").read_text())
    arm_b = json.loads((tmp_path / "retro_0.5" / "results.json").read_text())
    assert ab["delta_bpb_B_minus_A"] == arm_b["final_val_bpb"] - arm_a["final_val_bpb"]
    assert f"delta_bpb(B-A):{ab['delta_bpb_B_minus_A']:+.4f}" in first.stdout
    log_b = (tmp_path / "retro_0.5" / "train.log").read_text()
    assert "retro_alpha:0.5 passes_per_step:2" in log_b
    # The step warmdown this recipe always passed: (STEPS * 1000 + 4999) // 9999, 0 at 3 steps.
    assert arm_a["config"]["train"]["warmdown_steps"] == (3 * 1000 + 4999) // 9999
    mtime = (tmp_path / "retro_0" / "results.json").stat().st_mtime_ns
    second = run_ab(shakespeare_data, tmp_path)
    assert second.stdout.count("[skip ]") == 2
    assert (tmp_path / "retro_0" / "results.json").stat().st_mtime_ns == mtime


def test_missing_data_dir_is_one_error_line(tmp_path):
    res = run_ab(tmp_path / "nope", tmp_path / "out", check=False)
    assert res.returncode == 1 and res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
