"""The writeups' rerun commands work in a fresh copy of the repository (issue 13 item 1).

Each command runs in smoke form (tiny sizes) in a copy of the tracked and untracked-but-not-ignored
files, as a fresh clone has them. It must exit 0, write only under runs/ (never into a committed
record, which a rerun used to find "done" and print as if new), and print the committed record's
numbers beside its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
E = "experiments/2026-04-09_matched_ablation"
TINY_MODEL = "--num_layers 2 --model_dim 32 --num_heads 4 --num_kv_heads 2 --bigram_dim 16 --xsa_last_n 1"


def fresh_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def sh(clone: Path, command: str, env: dict) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{command}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
def test_writeup_commands_rerun_in_a_fresh_copy(tmp_path, shakespeare_data):
    clone = fresh_copy(tmp_path / "clone")
    before = snapshot(clone)
    # The interpreter of this session on PATH as `python`, nothing installed into the copy.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A wrapper, not a symlink: a venv's interpreter finds its site-packages from the path it is run by.
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUT_DIR", "CKPT_DIR", "LOG_DIR")}
    # PYTHONPATH: the copy's scripts/, what `pip install -e .` in the copy would put on the path.
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", MEADOW_SKIP_INSTALL="1", DATA_DIR=str(shakespeare_data),
               PYTHONPATH=str(clone / "scripts"))

    # The retrodiction diary: `bash experiments/2026-04-07_retrodiction_research_diary/run_ab.sh`.
    ab = sh(clone, "bash experiments/2026-04-07_retrodiction_research_diary/run_ab.sh",
            {**env, "STEPS": "2", "SEQ_LEN": "32", "BATCH_TOKENS": "256", "MODEL_FLAGS": TINY_MODEL})
    assert "[skip ]" not in ab.stdout and (clone / "runs/retrodiction_ab/ab.json").is_file()
    assert "[compare] record:" in ab.stdout and "delta_bpb(B-A)" in ab.stdout.split("[compare] record:")[1]

    # The matched ablation: PRESET=cpu STEPS=120 BUDGET_SECS=0 run_6/eval_6, run_seeds/eval_seeds with
    # COMPARE_TO, here at the smoke preset's sizes with fewer cells.
    ma = {**env, "PRESET": "smoke", "STEPS": "2", "BUDGET_SECS": "0", "EVAL_N_SEQS": "2", "HEARTBEAT_SECS": "0",
          "SCALES": "5L", "WEIGHTS": "0 0.3", "SEED_SCALE": "5L", "SEEDS": "1337 42", "CONTROL_SEEDS": ""}
    six = sh(clone, f"bash {E}/run_6.sh && COMPARE_TO={E}/cpu_record/ablation6 bash {E}/eval_6.sh", ma)
    assert "5L_w0.3_s1337 ar" in six.stdout and "[compare] record:" in six.stdout
    seeds = sh(clone, f"bash {E}/run_seeds.sh && COMPARE_TO={E}/cpu_record/seeds bash {E}/eval_seeds.sh", ma)
    assert "[compare] record:" in seeds.stdout
    for part in ("cells/5L_w0_s1337/final_model.npz", "cells/5L_w0.3_s42/eval_cf.json", "ablation6/results.json",
                 "seeds/results.json"):
        assert (clone / "runs/matched_ablation/smoke" / part).is_file(), part

    # The entropy floor: `cd $E && python entropy_floor.py` (default --out_dir under runs/).
    ef = sh(clone, f"cd {E} && python entropy_floor.py --steps 2 --seq_len 32 --batch_tokens 256 --num_layers 1 "
            "--model_dim 32 --weights 0,1 --train_docs 200 --val_docs 8 --device cpu", env)
    assert (clone / "runs/entropy_floor/entropy_floor.json").is_file()
    assert "[compare] record:" in ef.stdout and "floor bits/byte" in ef.stdout

    after = snapshot(clone)
    assert {k: v for k, v in after.items() if k in before} == before, "a committed file changed"
    assert all(k.startswith("runs/") for k in after if k not in before), sorted(set(after) - set(before))[:5]
