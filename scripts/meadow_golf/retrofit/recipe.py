"""The retrofit's recipe: fetch the base, train the adapter, run every evaluation, write the
gating table. run_retrofit.sh calls this; each stage is one of the experiment's entry scripts run
as a subprocess, and the stages talk only through the JSON files they write.

    PRESET=h100  bash experiments/2026-12-06_lora_retrofit/run_retrofit.sh   # Qwen3.5-0.8B-Base, one pod
    PRESET=smoke bash experiments/2026-12-06_lora_retrofit/run_retrofit.sh   # a tiny random Qwen3.5, CPU, minutes

Presets (the h100 budget: 1,500 steps x 32 rows x 2,049 tokens = 98.3M training tokens, both
passes on every token; not timed on a real pod):
  smoke  a tiny random-init Qwen3.5 built offline (tiny.py); 10 steps; a few problems per job
  h100   --base_model Qwen/Qwen3.5-0.8B-Base (hub; BASE_MODEL overrides), bf16, activation
         checkpointing, r = 16 on every linear; torchrun over every visible GPU
A stage whose JSON already exists is skipped (rerun = resume); training resumes by itself.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from meadow_golf.common.cli_help import HelpFormatter

EXPERIMENT = Path(__file__).resolve().parents[3] / "experiments" / "2026-12-06_lora_retrofit"
PRESETS = {
    "smoke": {"base_model": None, "device": "cpu",
              "train": ["--steps", "10", "--batch_size", "4", "--seq_len", "64", "--log_every", "5",
                        "--lora_r", "4", "--lora_alpha", "8", "--lr", "1e-3", "--warmup_steps", "2"],
              "humaneval": ["--limit", "2", "--max_new", "16"],
              "infill": ["--limit", "3", "--max_line", "8", "--rerank_n", "2"],
              "bits": ["--limit", "3", "--n_windows", "2", "--seq_len", "32", "--stdlib_tokens", "4000",
                       "--elbo_samples", "1"]},
    "h100": {"base_model": "Qwen/Qwen3.5-0.8B-Base", "device": "cuda",
             "train": ["--steps", "1500", "--batch_size", "32", "--seq_len", "2048", "--bf16", "--grad_checkpoint",
                       "--lora_r", "16", "--lora_alpha", "32", "--lr", "2e-4", "--warmup_steps", "50",
                       "--save_every", "100", "--log_every", "10",
                       "--train_data", "packages:torch,transformers,numpy"],
             "humaneval": ["--bf16"], "infill": ["--bf16"], "bits": ["--bf16", "--seq_len", "1024"]},
}


def run(cmd: list[str], log: Path) -> None:
    """One stage; the stage imports this checkout's package (its scripts/ first on PYTHONPATH)."""
    print("run: " + " ".join(cmd), flush=True)
    env = dict(os.environ)
    scripts = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = scripts + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log, "a", encoding="utf-8") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: stage failed (exit {done.returncode}); see {log}")


def fetch(source: str, out: Path) -> str:
    """A local folder for the base: itself if it is one, else the hub snapshot in OUT/base."""
    if Path(source).is_dir():
        return source
    from huggingface_hub import snapshot_download

    return snapshot_download(source, local_dir=str(out / "base"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), required=True, help="the run's size (see above)")
    p.add_argument("--out_dir", required=True, help="folder of the run: the base, train/, each stage's JSON, recipe.log")
    p.add_argument("--base_model", default="", help="overrides the preset's base")
    p.add_argument("--w", default="0.3", help="train_retrofit.py's --w (weight of the denoising loss)")
    p.add_argument("--mode", default="shared", choices=("shared", "adapter_off"), help="train_retrofit.py's --mode")
    p.add_argument("--deltanet", default="reverse", choices=("causal", "reverse"), help="train_retrofit.py's --deltanet")
    p.add_argument("--train_data", default="", help="overrides the preset's --train_data")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    preset = PRESETS[args.preset]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "recipe.log"
    py = sys.executable
    if args.preset == "smoke" and not args.base_model:
        from meadow_golf.retrofit.tiny import make_tiny_qwen

        if not (out / "tiny_base" / "config.json").is_file():
            make_tiny_qwen(out / "tiny_base")
        base = str(out / "tiny_base")
    else:
        base = fetch(args.base_model or preset["base_model"], out)
    train_dir = out / "train"
    train = [str(EXPERIMENT / "train_retrofit.py"), "--base_model", base, "--out_dir", str(train_dir),
             "--w", args.w, "--mode", args.mode, "--deltanet", args.deltanet, "--device", preset["device"],
             *preset["train"]] + (["--train_data", args.train_data] if args.train_data else [])
    if not (train_dir / "results.json").is_file():
        gpus = 0
        if preset["device"] == "cuda":
            import torch

            gpus = torch.cuda.device_count()
        launcher = [py, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}"] if gpus > 1 else [py]
        run(launcher + train, log)
    adapter = str(train_dir / "adapter")
    common = ["--base_model", base, "--adapter", adapter, "--device", preset["device"]]
    stages = [
        ("humaneval_base.json", "eval_humaneval.py", ["--model", "base", *preset["humaneval"]]),
        ("humaneval_retrofit.json", "eval_humaneval.py", ["--model", "retrofit", *preset["humaneval"]]),
        ("infill_base.json", "eval_infill.py", ["--model", "base", "--decoders", "prefix,rerank,fim",
                                                *preset["infill"]]),
        ("infill_retrofit.json", "eval_infill.py", ["--model", "retrofit", *preset["infill"]]),
        ("bits.json", "eval_bits.py", ["--model", "retrofit", *preset["bits"]]),
    ]
    for name, script, extra in stages:
        if not (out / name).is_file():
            run([py, str(EXPERIMENT / script), *common, "--out", str(out / name), *extra], log)
    run([py, str(EXPERIMENT / "report_retrofit.py"), "--run_dir", str(out)], log)
    print(f"done: {out / 'gating.md'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
