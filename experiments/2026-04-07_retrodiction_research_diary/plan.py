"""The retrodiction A/B's two arms and its recipe (run_ab.sh): a pure causal model (cdm_weight 0)
trained with and without the reversed-sequence auxiliary loss
    loss = CE(model(x), x) + RETRO_ALPHA * CE(model(flip(x)), flip(x))
for the same number of steps, then Pure-AR val_bpb of each (a valid code length) in OUT_DIR/ab.json.

    python experiments/2026-04-07_retrodiction_research_diary/plan.py run_ab

Environment (defaults in brackets): DATA_DIR [data/shakespeare]; OUT_DIR [runs/retrodiction_ab]
(one run folder per arm + ab.json; the committed record cpu_ab/ is never the default); COMPARE_TO
[this folder/cpu_ab] ("" = none); RETRO_ALPHA [0.5]; STEPS [120]; BATCH_TOKENS [4096]; SEQ_LEN [256];
SEED [1337]; DEVICE [cpu]; THREADS [1]; MODEL_FLAGS [--num_layers 3 --model_dim 128 --bigram_dim 64
--xsa_last_n 1] (the cpu "5L" scale). A finished arm (results.json) is skipped; an interrupted one resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from meadow_golf.common.python_deps import missing, missing_line
from meadow_golf.recipes.cells import write_json_atomic
from meadow_golf.recipes.cli import main as recipes_main
from meadow_golf.recipes.presets import RecipeError
from meadow_golf.recipes.running import Runner, fail
from meadow_golf.recipes.settings import ROOT, abs_path, check_int

HERE = Path(__file__).resolve().parent
TRAINER = ROOT / "experiments" / "2026-04-09_matched_ablation" / "train_cdm.py"
MODEL_FLAGS = "--num_layers 3 --model_dim 128 --bigram_dim 64 --xsa_last_n 1"


def arm_flags(env: dict, alpha: str, run: Path, data_dir: Path) -> list[str]:
    """One arm's trainer flags. Its step warmdown is the original's 1000/9999 of STEPS, rounded
    as this recipe always did: (STEPS * 1000 + 4999) // 9999."""
    steps = int(env.get("STEPS") or "120")
    return [*(env.get("MODEL_FLAGS") or MODEL_FLAGS).split(), "--cdm_weight", "0", "--retro_alpha", alpha,
            "--seq_len", env.get("SEQ_LEN") or "256", "--batch_tokens", env.get("BATCH_TOKENS") or "4096",
            "--steps", str(steps), "--train_budget_secs", "0", "--seed", env.get("SEED") or "1337",
            "--warmdown_steps", str((steps * 1000 + 4999) // 9999), "--val_every", "0", "--val_tokens", "65536",
            "--save_every", "40", "--log_every", "20", "--device", env.get("DEVICE") or "cpu",
            "--data_dir", str(data_dir), "--checkpoint_dir", str(run), "--resume", "auto"]


def run_ab(env, out) -> None:
    """train both arms, write ab.json, print the record beside it"""
    cwd = Path.cwd()
    data_dir = abs_path(env.get("DATA_DIR") or str(ROOT / "data" / "shakespeare"), cwd)
    out_dir = abs_path(env.get("OUT_DIR") or str(ROOT / "runs" / "retrodiction_ab"), cwd)
    compare_to = env.get("COMPARE_TO", str(HERE / "cpu_ab"))
    compare_to = str(abs_path(compare_to, cwd)) if compare_to else ""
    alpha = env.get("RETRO_ALPHA") or "0.5"
    for name in ("STEPS", "BATCH_TOKENS", "SEQ_LEN", "SEED"):
        if env.get(name):
            check_int(name, env[name])
    lacking = missing(["torch", "numpy", "sentencepiece"])
    if lacking:
        raise RecipeError(missing_line(lacking, extra="torch", python_label=f"PYTHON={env.get('PYTHON') or 'python'}")
                          .removeprefix("error: "))
    if not data_dir.is_dir():
        raise RecipeError(f"DATA_DIR={data_dir} does not exist (python scripts/prepare_data.py shakespeare --out {data_dir})")
    if compare_to and not Path(compare_to).exists():
        raise RecipeError(f'COMPARE_TO={compare_to} does not exist (a record folder with ab.json, or "" for none)')
    import os
    threads = env.get("THREADS") or "1"
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads
    out_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, int(env.get("HEARTBEAT_SECS") or "60"), env.get("VERBOSE") == "1")
    for arm, a in (("A", "0"), ("B", alpha)):
        run = out_dir / f"retro_{a}"
        if (run / "results.json").is_file():
            print(f"[skip ] arm {arm} (retro_alpha {a}): {run}/results.json exists", file=out, flush=True)
            continue
        print(f"[start] arm {arm} (retro_alpha {a}) -> {run}", file=out, flush=True)
        argv = arm_flags(env, a, run, data_dir)
        log = out_dir / f"retro_{a}.log"
        rc = runner.in_process(log, f"arm {arm}", ["python", str(TRAINER), *argv], "meadow_golf.train.train_cdm", argv)
        if rc != 0 or not (run / "results.json").is_file():
            raise fail(f"training arm {arm}", rc or 143, log)
    summary = write_ab(out_dir, alpha)
    for name in ("A", "B"):
        s = summary[name]
        print(f"arm:{name} retro_alpha:{s['retro_alpha']} steps:{s['steps']} train_s:{s['train_seconds']:.0f} "
              f"pure_ar_val_bpb:{s['pure_ar_val_bpb']:.4f} (valid code length)", file=out)
    print(f"delta_bpb(B-A):{summary['delta_bpb_B_minus_A']:+.4f}", file=out, flush=True)
    record = Path(compare_to) if compare_to else None
    if record is not None and not record.is_dir():
        record = record.parent
    if record is not None and out_dir.resolve() != record.resolve():  # not the record itself
        from contextlib import redirect_stdout

        from meadow_golf.report import compare_record
        with redirect_stdout(out):
            compare_record.main([str(out_dir / "ab.json"), compare_to])


def write_ab(out_dir: Path, alpha: str) -> dict:
    import json
    arms = {name: json.loads((out_dir / f"retro_{a}" / "results.json").read_text()) for name, a in (("A", "0"), ("B", alpha))}
    summary = {name: {"retro_alpha": r["config"]["train"]["retro_alpha"], "steps": r["steps"],
                      "tokens_seen": r["tokens_seen"], "train_seconds": r["train_seconds"],
                      "pure_ar_val_bpb": r["final_val_bpb"]} for name, r in arms.items()}
    summary["delta_bpb_B_minus_A"] = summary["B"]["pure_ar_val_bpb"] - summary["A"]["pure_ar_val_bpb"]
    write_json_atomic(out_dir / "ab.json", summary)
    return summary


RECIPES = {"run_ab": run_ab}


def main(argv=None) -> int:
    return recipes_main(RECIPES, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
