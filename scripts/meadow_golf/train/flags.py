"""The trainers' flags: the parser both trainers share, its validation, the model config the
model flags make, and the rules of the original recipe (which flag values are its rules, and which
a run departs from). Written once for train_cdm.py (torch) and train_cdm_mlx.py.
"""

from __future__ import annotations

import argparse
import math

from meadow_golf.common.cli_help import HelpFormatter
from meadow_golf.model import noise as noise_mod
from meadow_golf.model.config import GPTConfig

# The original recipe's nominal step count (its run_6.sh passed --steps 9999) and the length of its
# time-based warmdown (METHOD.md §4).
ORIGINAL_STEPS = 9999
ORIGINAL_WARMDOWN_SECS = 80.0
ORIGINAL_EMA_START_FRAC = 0.8
CLOCKS = ("original", "train_only")
# The flags whose value IS one of the original's rules, with that value: a run that sets another
# value departs from the original on that rule (named in results.json, see departures()).
ORIGINAL_RULES = {"noise": "uniform", "cdm_loss": "plain", "warmdown_steps": 1000, "warmdown_secs": ORIGINAL_WARMDOWN_SECS,
                  "muon_clip": 0.3, "ema_decay": 0.997, "ema_start_step": -1, "clock": "original",
                  "val_tokens": 1_000_000, "grad_clip": 0.0, "steps": ORIGINAL_STEPS, "train_budget_secs": 540.0}


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The flags of both trainers (the original recipe's names plus what a CPU/Mac user needs)."""
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    m = p.add_argument_group("model (METHOD.md §3; defaults are the 5L config)")
    m.add_argument("--num_layers", type=int, default=5, help="transformer layers")
    m.add_argument("--model_dim", type=int, default=256, help="residual width d")
    m.add_argument("--num_heads", type=int, default=8, help="query heads")
    m.add_argument("--num_kv_heads", type=int, default=4, help="key/value heads (grouped-query attention)")
    m.add_argument("--mlp_mult", type=int, default=3, help="MLP hidden width as a multiple of --model_dim")
    m.add_argument("--vocab_size", type=int, default=0, help="0: the tokenizer's vocabulary size")
    m.add_argument("--bigram_dim", type=int, default=128, help="0 disables BigramHash")
    m.add_argument("--xsa_last_n", type=int, default=2, help="0 disables XSA")
    t = p.add_argument_group("training (METHOD.md §4; every default is the original recipe's rule)")
    t.add_argument("--cdm_weight", type=float, default=0.3, help="0 = causal-only control")
    t.add_argument("--noise", default="uniform", choices=noise_mod.NOISES, help=noise_mod.HELP["noise"])
    t.add_argument("--cdm_loss", default="plain", choices=noise_mod.CDM_LOSSES, help=noise_mod.HELP["cdm_loss"])
    t.add_argument("--retro_alpha", type=float, default=0.0,
                   help="weight of the reversed-sequence causal loss (retrodiction line); 0 = off")
    t.add_argument("--train_budget_secs", type=float, default=540.0, help="wall-clock budget; 0 = none")
    t.add_argument("--steps", type=int, default=ORIGINAL_STEPS,
                   help="step cap, also the nominal length that places the step-based warmdown and the EMA "
                        "start (the original recipe passed 9999); 0 = none")
    t.add_argument("--seq_len", type=int, default=1024, help="training window length (tokens)")
    t.add_argument("--batch_tokens", type=int, default=64 * 1024, help="tokens per step (global)")
    t.add_argument("--warmdown_steps", type=int, default=1000,
                   help="LR warmdown: linear decay over the last N of --steps. The original's 1000 is 10%% of its "
                        "--steps 9999: for a shorter run scale it to round(steps * 1000 / 9999) (the recipes do: "
                        "--steps 120 --warmdown_steps 12); the default 1000 with --steps 60 would start the LR "
                        "at 0.06x (a warning says so)")
    t.add_argument("--warmdown_secs", type=float, default=ORIGINAL_WARMDOWN_SECS,
                   help="LR warmdown over the budget's last N seconds (the multiplier is at most remaining/N). The "
                        "original's 80 of its 540 s budget scales as budget * 80 / 540 (the recipes do)")
    t.add_argument("--muon_lr", type=float, default=0.025, help="Muon learning rate (matrices)")
    t.add_argument("--muon_wd", type=float, default=0.04, help="Muon weight decay")
    t.add_argument("--muon_clip", type=float, default=0.3,
                   help="Muon clips each matrix's gradient to this Frobenius norm before momentum; 0 = off")
    t.add_argument("--embed_lr", type=float, default=0.035, help="Adam learning rate of the embeddings")
    t.add_argument("--scalar_lr", type=float, default=0.025, help="Adam learning rate of scalars and vectors (gains, scales)")
    t.add_argument("--adam_wd", type=float, default=0.0, help="Adam weight decay")
    t.add_argument("--momentum_warmup_steps", type=int, default=1500, help="steps over which Muon's momentum rises to its final value")
    t.add_argument("--grad_clip", type=float, default=0.0, help="global gradient-norm clip (not in the original); 0 = off")
    t.add_argument("--ema_decay", type=float, default=0.997, help="0 = EMA off")
    t.add_argument("--ema_start_step", type=int, default=-1,
                   help="0-based step after whose update the EMA starts; -1 = int(0.8 * --steps), the original's")
    t.add_argument("--clock", default="original", choices=CLOCKS,
                   help="original: the budget clock runs from the loop's start and includes compilation, "
                        "validations and step saves; train_only: only the steps count (compilation is done "
                        "in a warm-up before the clock)")
    t.add_argument("--seed", type=int, default=1337, help="model initialization, batch order and D3PM noise")
    io = p.add_argument_group("data, saves, logs")
    io.add_argument("--data_dir", required=True, help="prepared data folder (scripts/prepare_data.py)")
    io.add_argument("--tokenizer_path", default=None, help="default: the tokenizer named in DATA_DIR/meta.json")
    io.add_argument("--checkpoint_dir", default="runs/cdm", help="step checkpoints, logs, results.json")
    io.add_argument("--save_path", default=None, help="portable .npz (default CHECKPOINT_DIR/final_model.npz)")
    io.add_argument("--save_every", type=int, default=500, help="step_<N>.pt every N steps; 0 = final only")
    io.add_argument("--val_every", type=int, default=500, help="0 = only at the end")
    io.add_argument("--val_tokens", type=int, default=1_000_000,
                    help="validate on the first N tokens, cut to whole --seq_len windows; 0 = all")
    io.add_argument("--val_batch_size", type=int, default=32, help="sequences per validation forward")
    io.add_argument("--log_every", type=int, default=50, help="a train line every N steps (and at steps 1 and --steps)")
    io.add_argument("--log_every_secs", type=float, default=30.0,
                    help="also a train line once this many seconds of the run's clock passed since the last "
                         "one, so a slow step count is never silent for long; 0 = by step only")
    io.add_argument("--resume", default=None, help="a step_*.pt, or 'auto' for the newest in CHECKPOINT_DIR")
    io.add_argument("--overwrite", action="store_true",
                    help="start a new run in a CHECKPOINT_DIR that holds another run (step checkpoints, "
                         "results.json): that run's checkpoints, final files and logs are deleted first")
    d = p.add_argument_group("device")
    d.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="auto: cuda, else mps, else cpu")
    d.add_argument("--compile", action="store_true", help="torch.compile the model (both passes)")
    d.add_argument("--tok_emb_dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="torch: dtype of the tok_emb parameter (and its Adam state); auto = bfloat16 on CUDA "
                        "as in the original, float32 elsewhere")
    d.add_argument("--fuse_passes", action="store_true",
                   help="torch: run the causal and denoising passes of a step as one batched forward "
                        "(same losses up to float rounding; more activation memory)")
    return p


def model_config(args, vocab_size: int) -> GPTConfig:
    return GPTConfig(
        vocab_size=vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
        num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
        bigram_dim=args.bigram_dim, xsa_last_n=args.xsa_last_n,
        mask_token=noise_mod.has_mask_token(getattr(args, "noise", "uniform")),
    )


# The lowest sensible value of each numeric flag (checked by validate_args before anything is
# read). Sizes and counts that something is divided by or iterated over must be >= 1; the flags
# whose 0 means "none"/"off"/"all" (documented in their help) must be >= 0.
AT_LEAST_ONE = ("num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "seq_len", "batch_tokens",
                "val_batch_size", "log_every")
AT_LEAST_ZERO = ("vocab_size", "bigram_dim", "xsa_last_n", "steps", "train_budget_secs", "warmdown_steps",
                 "warmdown_secs", "momentum_warmup_steps", "save_every", "val_every", "val_tokens", "log_every_secs",
                 "cdm_weight", "retro_alpha", "muon_lr", "muon_wd", "muon_clip", "embed_lr", "scalar_lr", "adam_wd",
                 "grad_clip")
# numpy's legacy seeding takes [0, 2**32); the corruption generator is seeded with seed + 1.
SEED_RANGE = (0, 2 ** 32 - 2)


def validate_args(args) -> None:
    """Refuse a nonsense flag value before any file is read, with one message naming the flag."""
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name} must be a finite number, got {value}")
    for name in AT_LEAST_ONE:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in AT_LEAST_ZERO:
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.batch_tokens % args.seq_len:
        raise ValueError(f"--batch_tokens {args.batch_tokens} must be a positive multiple of --seq_len {args.seq_len}")
    if args.train_budget_secs <= 0 and args.steps <= 0:
        raise ValueError("give a wall-clock budget (--train_budget_secs > 0) or a step cap (--steps > 0)")
    if not SEED_RANGE[0] <= args.seed <= SEED_RANGE[1]:
        raise ValueError(f"--seed must lie in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], got {args.seed}")
    if args.ema_start_step < -1:
        raise ValueError(f"--ema_start_step must be >= -1 (-1 = int(0.8 * --steps)), got {args.ema_start_step}")
    if 0 < args.val_tokens < args.seq_len:
        # val_tokens N gives N // seq_len whole windows (load_validation reads N + 1 tokens).
        raise ValueError(f"--val_tokens {args.val_tokens} holds no validation window of --seq_len {args.seq_len} "
                         f"(+1) tokens: give --val_tokens >= {args.seq_len} or 0 (all)")
    if not 0 <= args.ema_decay < 1:
        raise ValueError(f"--ema_decay must lie in [0, 1), got {args.ema_decay}")
    if args.ema_decay > 0 and args.ema_start_step < 0 and args.steps <= 0:
        raise ValueError("EMA starts at int(0.8 * --steps): give --steps, an explicit --ema_start_step, "
                         "or --ema_decay 0")
    noise_mod.check_pair(args.noise, args.cdm_loss)
    if getattr(args, "overwrite", False) and args.resume:
        raise ValueError("--overwrite starts a new run and --resume continues one: give one of them")
    try:  # the model's own structural rules (heads divide the width, XSA depth, ...), vocab aside
        model_config(args, max(args.vocab_size, 1))
    except ValueError as e:
        raise ValueError(f"model flags: {e}") from None


def departures(args) -> list[str]:
    """`flag=value` for each rule flag set away from the original recipe's value (empty: every
    rule of the original holds). Model sizes, data, batch and device are not rules."""
    return [f"{k}={getattr(args, k)}" for k, v in ORIGINAL_RULES.items() if getattr(args, k) != v]


def scaled_warmdown(args) -> str:
    """The original's warmdown shares (1000 of 9999 steps, 80 of 540 s) at this run's length, as flags."""
    parts = []
    if args.steps > 0:
        parts.append(f"--warmdown_steps {int(args.steps * 1000 / ORIGINAL_STEPS + 0.5)}")
    if args.train_budget_secs > 0:
        parts.append(f"--warmdown_secs {args.train_budget_secs * ORIGINAL_WARMDOWN_SECS / 540:g}")
    return " ".join(parts)


def flag_warnings(args) -> list[str]:
    """What a flag combination makes of the run that its user would likely not expect, one sentence
    each (the trainer logs them at the start and records them in results.json "warnings"). Today:
    a warmdown that spans the whole run, so the LR never reaches its full value (the original's
    1000-step and 80 s warmdowns kept under a short --steps or --train_budget_secs)."""
    found = []
    if args.steps > 0 and args.warmdown_steps >= args.steps:
        found.append(f"--warmdown_steps {args.warmdown_steps} >= --steps {args.steps}: the LR decays over the whole "
                     f"run, starting at {args.steps / max(args.warmdown_steps, 1):.3g}x; the original's share "
                     f"(1000 of 9999) at this length is {scaled_warmdown(args)}")
    if args.train_budget_secs > 0 and args.warmdown_secs >= args.train_budget_secs:
        found.append(f"--warmdown_secs {args.warmdown_secs:g} >= --train_budget_secs {args.train_budget_secs:g}: the "
                     f"LR decays over the whole budget, at most {args.train_budget_secs / args.warmdown_secs:.3g}x "
                     f"from the start; the original's share (80 of 540 s) at this length is {scaled_warmdown(args)}")
    return found
