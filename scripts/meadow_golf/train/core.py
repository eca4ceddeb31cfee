"""The backend-independent training driver shared by train_cdm.py (torch) and train_cdm_mlx.py.

Flags, their validation, the schedule (progress of a wall-clock and/or step budget, linear LR
warm-down, Muon momentum warm-up), the data (stream, validation tokens, vocabulary checks), the
loop with its `key:value` logs and JSON records, EMA timing, validation, step saves and the
final saves (portable .npz, int6 artifact, results.json) are written here once. A backend
subclasses TrainerBase and supplies only the model-specific pieces (see its hooks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np

from meadow_golf.data import loader as data_mod
from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.model.checkpoint import ARTIFACT_LIMIT_BYTES, save_int6_artifact, save_npz
from meadow_golf.model.config import GPTConfig
from meadow_golf.train.optim_common import muon_momentum
from meadow_golf.common.run_log import RunLog, git_commit, versions
from meadow_golf.common.cli_help import HelpFormatter

REPO_ROOT = Path(__file__).resolve().parents[3]
MASK_RATE_RANGE = (0.15, 0.50)
# The denoising pass's noise (--noise) and loss (--cdm_loss); the first of each is the original's.
#   uniform:   a corrupted position gets a token uniform on [0, V) (D3PM-uniform, METHOD.md §4.1).
#   absorbing: a corrupted position gets the mask token, id V (GPTConfig.mask_token: one extra
#              input-only embedding row; the tied head still predicts only [0, V)).
#   plain:     one rate r ~ U(MASK_RATE_RANGE) per step, CE averaged over the corrupted positions.
#   elbo:      MDLM's continuous-time ELBO with the linear schedule alpha_t = 1 - t: each row of the
#              global batch gets its own mask time t (stratified, elbo_times), each position is
#              masked with probability t, and the loss is sum over masked positions of CE / t,
#              divided by the global B*T: the NELBO per token (an upper bound on the NLL per
#              token of an absorbing model). Only with absorbing noise: for uniform noise the
#              1/t weighting is not an ELBO, so that pair is refused.
NOISES = ("uniform", "absorbing")
CDM_LOSSES = ("plain", "elbo")
# The original recipe's nominal step count (its run_6.sh passed --steps 9999) and the length of its
# time-based warmdown (METHOD.md §4).
ORIGINAL_STEPS = 9999
ORIGINAL_WARMDOWN_SECS = 80.0
ORIGINAL_EMA_START_FRAC = 0.8
LR_SCHEDULES = ("original", "progress")
CLOCKS = ("original", "train_only")
# The flags whose value IS one of the original's rules, with that value: a run that sets another
# value departs from the original on that rule (named in results.json, see departures()).
ORIGINAL_RULES = {"noise": "uniform", "cdm_loss": "plain", "lr_schedule": "original", "warmdown_steps": 1000, "warmdown_secs": ORIGINAL_WARMDOWN_SECS,
                  "muon_clip": 0.3, "ema_decay": 0.997, "ema_start_step": -1, "clock": "original",
                  "val_tokens": 1_000_000, "grad_clip": 0.0, "steps": ORIGINAL_STEPS, "train_budget_secs": 540.0}
# Flags that say where files go or how the same arithmetic is carried out, not what is trained:
# a resume may change them freely. Every other flag defines the run and must equal the
# checkpoint's (the model flags through the model config, the tokenizer through its sha256).
RESUME_FREE_FLAGS = frozenset({"log_every", "log_every_secs", "checkpoint_dir", "save_path", "save_every", "resume", "overwrite",
                               "device", "compile", "fuse_passes", "val_batch_size", "data_dir", "tokenizer_path",
                               "help"})
# Changes a resume may make on purpose, each recorded (log and results.json "resume_changes"): the
# step cap and the wall-clock budget only say when the run stops (they also place the warmdown
# and, with --ema_start_step -1, the EMA start, which the record then explains).
RESUME_SAFE_CHANGES = ("steps", "train_budget_secs")
# The files a run writes into CHECKPOINT_DIR besides the step checkpoints (what --overwrite deletes).
# Only its state counts as "another run" that a new run refuses to mix with: the logs of a run
# killed before its first checkpoint hold nothing to resume, and a new run rewrites them.
RUN_STATE_FILES = ("results.json", "final_model.npz", "final_model.int6.lzma")
RUN_LOG_FILES = ("train.log", "train_log.jsonl")


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
    for flag in ("smear_gate", "unet_skips", "layer_scale", "resid_mix", "qk_norm"):
        m.add_argument(f"--no_{flag}", action="store_true", help=f"disable {flag}")
    t = p.add_argument_group("training (METHOD.md §4; every default is the original recipe's rule)")
    t.add_argument("--cdm_weight", type=float, default=0.3, help="0 = causal-only control")
    t.add_argument("--noise", default="uniform", choices=NOISES,
                   help="denoising corruption: uniform (the original's D3PM-uniform) or absorbing (a mask "
                        "token, one extra input-only embedding row)")
    t.add_argument("--cdm_loss", default="plain", choices=CDM_LOSSES,
                   help="plain: the original's rate U(0.15, 0.5) and masked-mean CE; elbo: MDLM's continuous-time "
                        "ELBO (t ~ U(0, 1) stratified per row, CE weighted 1/t; needs --noise absorbing)")
    t.add_argument("--retro_alpha", type=float, default=0.0,
                   help="weight of the reversed-sequence causal loss (retrodiction line); 0 = off")
    t.add_argument("--train_budget_secs", type=float, default=540.0, help="wall-clock budget; 0 = none")
    t.add_argument("--steps", type=int, default=ORIGINAL_STEPS,
                   help="step cap, also the nominal length that places the step-based warmdown and the EMA "
                        "start (the original recipe passed 9999); 0 = none")
    t.add_argument("--seq_len", type=int, default=1024, help="training window length (tokens)")
    t.add_argument("--batch_tokens", type=int, default=64 * 1024, help="tokens per step (global)")
    t.add_argument("--lr_schedule", default="original", choices=LR_SCHEDULES,
                   help="original: linear decay over the last --warmdown_steps of --steps, and over the last "
                        "--warmdown_secs of the budget; progress (the project's earlier rule): linear decay "
                        "over the last --warmdown_frac of the run's progress")
    t.add_argument("--warmdown_steps", type=int, default=1000, help="lr_schedule original: step-based warmdown length")
    t.add_argument("--warmdown_secs", type=float, default=ORIGINAL_WARMDOWN_SECS,
                   help="lr_schedule original: time-based warmdown over the budget's last N seconds")
    t.add_argument("--warmdown_frac", type=float, default=0.2,
                   help="lr_schedule progress: final fraction of progress with linear LR decay to 0")
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
        smear_gate=not args.no_smear_gate, unet_skips=not args.no_unet_skips,
        layer_scale=not args.no_layer_scale, resid_mix=not args.no_resid_mix, qk_norm=not args.no_qk_norm,
        mask_token=getattr(args, "noise", "uniform") == "absorbing",
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
    if not 0 <= args.warmdown_frac <= 1:
        raise ValueError(f"--warmdown_frac must lie in [0, 1], got {args.warmdown_frac}")
    if not 0 <= args.ema_decay < 1:
        raise ValueError(f"--ema_decay must lie in [0, 1), got {args.ema_decay}")
    if args.ema_decay > 0 and args.ema_start_step < 0 and args.steps <= 0:
        raise ValueError("EMA starts at int(0.8 * --steps): give --steps, an explicit --ema_start_step, "
                         "or --ema_decay 0")
    if args.cdm_loss == "elbo" and args.noise != "absorbing":
        raise ValueError("--cdm_loss elbo needs --noise absorbing (the 1/t weighting is the ELBO of the absorbing "
                         "process only)")
    if getattr(args, "overwrite", False) and args.resume:
        raise ValueError("--overwrite starts a new run and --resume continues one: give one of them")
    try:  # the model's own structural rules (heads divide the width, XSA depth, ...), vocab aside
        model_config(args, max(args.vocab_size, 1))
    except ValueError as e:
        raise ValueError(f"model flags: {e}") from None


def elbo_times(u: float, n_rows: int) -> list[float]:
    """The mask times of --cdm_loss elbo for the n_rows rows of the global batch, from one uniform
    draw u in [0, 1): t_b = 1 - (b + u) / n_rows. Stratified (one time in each interval of width
    1/n_rows, as MDLM's low-discrepancy sampler), so the batch covers (0, 1] evenly and the
    1/t-weighted loss has less variance; each t_b alone is still U(0, 1], so the loss is unbiased.
    1 - ...: t lies in (0, 1], never 0, so 1/t is finite. Both trainers compute their times
    with this formula (torch and MLX draw u from their own generators)."""
    return [1.0 - (b + u) / n_rows for b in range(n_rows)]


def ema_start_step(args) -> int:
    """0-based index of the step after whose update the EMA shadow is created (the original's
    int(0.8 * steps), taken from the NOMINAL --steps, not from the time budget)."""
    return args.ema_start_step if args.ema_start_step >= 0 else int(ORIGINAL_EMA_START_FRAC * args.steps)


def ema_due(args, step_index: int) -> bool:
    """Whether the EMA acts after the update of 0-based step step_index: it is created (a copy)
    at ema_start_step and averaged in at every later step."""
    return args.ema_decay > 0 and step_index >= ema_start_step(args)


def departures(args) -> list[str]:
    """`flag=value` for each rule flag set away from the original recipe's value (empty: every
    rule of the original holds). Model sizes, data, batch and device are not rules."""
    return [f"{k}={getattr(args, k)}" for k, v in ORIGINAL_RULES.items() if getattr(args, k) != v]


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process as one of several (WORLD_SIZE > 1). Here rather than in
    distributed.py (which re-exports it) so that the MLX trainer can refuse torchrun without torch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def seed_python_numpy(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


def progress(step: int, elapsed: float, args) -> float:
    """Fraction of the run done: the larger of the time and step fractions that apply."""
    fracs = []
    if args.train_budget_secs > 0:
        fracs.append(elapsed / args.train_budget_secs)
    if args.steps > 0:
        fracs.append(step / args.steps)
    return min(1.0, max(fracs))


def lr_multiplier(frac_done: float, warmdown_frac: float) -> float:
    """lr_schedule progress: 1, then a linear decay to 0 over the final warmdown_frac of progress."""
    if warmdown_frac <= 0:
        return 1.0
    return max(0.0, min(1.0, (1.0 - frac_done) / warmdown_frac))


def original_lr_multiplier(step: int, steps: int, warmdown_steps: int, remaining_secs: float | None = None,
                           warmdown_secs: float = ORIGINAL_WARMDOWN_SECS) -> float:
    """The original recipe's LR multiplier for the 0-based step `step` (METHOD.md §4).

    Step rule: 1.0, except (steps - step) / warmdown_steps for steps - warmdown_steps <= step < steps
    (no warmup; the last trained step gets 1/warmdown_steps). Time rule, when a budget runs:
    with 0 < remaining_secs < warmdown_secs, the multiplier is at most remaining_secs / warmdown_secs.
    """
    mult = 1.0
    if steps > 0 and max(steps - warmdown_steps, 0) <= step < steps:
        mult = max((steps - step) / max(warmdown_steps, 1), 0.0)
    if remaining_secs is not None and 0 < remaining_secs < warmdown_secs:
        mult = min(mult, remaining_secs / warmdown_secs)
    return mult


def schedule_lr(args, step: int, elapsed: float) -> float:
    """The LR multiplier of the 0-based step `step` after `elapsed` budget seconds, by --lr_schedule."""
    if args.lr_schedule == "progress":
        return lr_multiplier(progress(step, elapsed, args), args.warmdown_frac)
    remaining = args.train_budget_secs - elapsed if args.train_budget_secs > 0 else None
    return original_lr_multiplier(step, args.steps, args.warmdown_steps, remaining, args.warmdown_secs)


def newest_step_checkpoint(ckpt_dir: Path, suffix: str) -> Path | None:
    """The step_<N><suffix> with the largest N (step_final is not a resume point)."""
    steps = []
    for p in ckpt_dir.glob(f"step_*{suffix}"):
        tail = p.name[len("step_"):-len(suffix)]
        if tail.isdigit():
            steps.append((int(tail), p))
    return max(steps)[1] if steps else None


def check_writable_folder(folder: Path, flag: str) -> None:
    """The folder (or, when it does not exist yet, its nearest existing parent) must be a
    writable folder, so that no training is spent on a run whose files cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: {flag} is a file, not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{existing}: not a folder, so {flag} {folder} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{existing}: not writable ({flag} {folder})")


def old_run_files(ckpt_dir: Path, with_logs: bool = True) -> list[Path]:
    """Another run's files in ckpt_dir: its step checkpoints (either backend's), its final files
    and results.json, and (with_logs) its logs."""
    if not ckpt_dir.is_dir():
        return []
    steps = [p for p in ckpt_dir.glob("step_*") if p.suffix in (".pt", ".safetensors")]
    names = RUN_STATE_FILES + (RUN_LOG_FILES if with_logs else ())
    return sorted(steps) + [ckpt_dir / n for n in names if (ckpt_dir / n).exists()]


def remove_old_run(ckpt_dir: Path) -> list[str]:
    """Delete another run's files from ckpt_dir (--overwrite), returning their names.

    The folder is first renamed aside in one step (an atomic rename), then recreated with only the
    entries that are not the old run's moved back, then the aside copy is deleted: if this is
    interrupted, the old run is either whole (nothing happened yet) or gone from ckpt_dir, never a
    part of it that --resume auto could pick up."""
    old = {p.name for p in old_run_files(ckpt_dir)}
    if not old:
        return []
    aside = ckpt_dir.parent / f".{ckpt_dir.name}.overwritten.{os.getpid()}"
    os.replace(ckpt_dir, aside)
    ckpt_dir.mkdir()
    for entry in aside.iterdir():
        if entry.name not in old:
            os.replace(entry, ckpt_dir / entry.name)
    import shutil

    shutil.rmtree(aside)
    return sorted(old)


class StopRequest:
    """SIGTERM / SIGINT ask the loop to stop after the current step (checkpoint, exit 0).

    A second SIGINT raises KeyboardInterrupt at once. The previous handlers come back on restore().
    Signals can only be caught in the main thread; elsewhere (a test runner's worker) nothing is installed.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# The flags whose value is a path: resume_command makes them absolute.
PATH_FLAGS = ("--data_dir", "--tokenizer_path", "--checkpoint_dir", "--save_path")


def resume_command(argv: list[str] | None = None, cwd: str | None = None) -> str:
    """This process's command line with --resume auto (what to run to continue after a stop),
    with the script and every path flag absolute, so that it works from any folder. --overwrite
    is dropped: it would delete the run to be continued (and is refused with --resume)."""
    argv = list(sys.argv if argv is None else argv)
    cwd = cwd or os.getcwd()

    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))

    out = [absolute(argv[0])] if argv and argv[0].endswith(".py") else argv[:1]
    i = 1
    while i < len(argv):
        a = argv[i]
        flag, eq, value = a.partition("=")
        if flag in ("--resume", "--overwrite"):
            i += 1 if (eq or flag == "--overwrite") else 2
            continue
        if flag in PATH_FLAGS:
            if eq:
                out.append(f"{flag}={absolute(value)}")
            elif i + 1 < len(argv):
                out.extend([a, absolute(argv[i + 1])])
                i += 1
            else:
                out.append(a)
        else:
            out.append(a)
        i += 1
    argv = out
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = [sys.executable] if world == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     f"--nproc_per_node={world}"]
    return shlex.join([*launcher, *argv, "--resume", "auto"])


class TrainerBase:
    """The training loop. Hooks a backend implements:

    set_schedule(lr_mult, momentum)   apply the schedule to the optimizers
    train_step(x, y) -> (ar, cdm)     one full step on numpy (B, T) batches; returns when the
                                      update is done (synchronized), losses as backend scalars
                                      (cdm None when cdm_weight == 0)
    scalar(value) -> float
    ema_update(decay)                 self.ema <- decay * self.ema + (1 - decay) * weights, as the
                                      original: ema * decay, then + (1 - decay) * weights
                                      (self.ema is None before the first call: copy the weights)
    load_ema()                        put self.ema into the model
    swap_in_ema() -> token            put self.ema into the model, returning what restore_weights
    restore_weights(token)            needs to put the raw weights back (validation on EMA weights)
    val_bpb() -> dict                 the Pure-AR validation on self.val_tokens (val_loss, val_bpb,
                                      val_tokens, val_bytes)
    save_step(name) / load_state(path) / weights_numpy() -> {name: float32 array}
    num_params() -> int, device_name() -> str, extra_results() -> dict
    checkpoint_suffix                 file ending of step checkpoints
    """

    backend = "none"
    checkpoint_suffix = ".pt"
    # Data parallelism (torchrun): a backend that supports it sets these before TrainerBase.__init__
    # and overrides agree / mean_over_ranks / rank_weight_spread.
    rank = 0
    world_size = 1

    def __init__(self, args):
        self.args = args
        if args.batch_tokens % (args.seq_len * self.world_size):
            raise ValueError(f"--batch_tokens {args.batch_tokens} must be a multiple of --seq_len {args.seq_len} "
                             f"x {self.world_size} processes")
        # Every input is checked here, before the model is built and before any file is written:
        # the output folders, the resume target, the data, the tokenizer and the validation size.
        self.ckpt_dir = Path(args.checkpoint_dir)
        check_writable_folder(self.ckpt_dir, "--checkpoint_dir")
        if args.save_path:
            if Path(args.save_path).is_dir():
                raise ValueError(f"{args.save_path}: --save_path is a folder, not a file")
            check_writable_folder(Path(args.save_path).parent, "--save_path's folder")
        self.resume_from = self.resume_target()
        if self.resume_from is None and not args.overwrite:
            old = old_run_files(self.ckpt_dir, with_logs=False)
            if old:
                raise ValueError(f"{self.ckpt_dir}: holds another run ({', '.join(p.name for p in old[:3])}"
                                 f"{', ...' if len(old) > 3 else ''}): continue it with --resume, start anew "
                                 "with --overwrite (deletes it), or choose another --checkpoint_dir")
        self.tokenizer_path = data_mod.resolve_tokenizer(args.data_dir, args.tokenizer_path)
        self.tables = data_mod.load_byte_tables(self.tokenizer_path)
        self.tokenizer = data_mod.tokenizer_identity(self.tokenizer_path, self.tables.vocab_size)
        vocab = args.vocab_size or self.tables.vocab_size
        self.config = model_config(args, vocab)
        data_mod.check_vocab(args.data_dir, self.tables, self.tokenizer_path, vocab)
        self.stream = data_mod.TokenStream(args.data_dir, "train")
        data_mod.check_train_shards(args.data_dir, vocab)
        self.val_tokens = data_mod.load_validation(args.data_dir, args.val_tokens, vocab)
        if len(self.val_tokens) < args.seq_len + 1:
            within = f"the first {args.val_tokens} + 1" if args.val_tokens > 0 else "all"
            raise ValueError(f"{args.data_dir}: the validation split gives {len(self.val_tokens)} tokens ({within}), "
                             f"fewer than one window of --seq_len {args.seq_len} + 1: lower --seq_len or raise "
                             "--val_tokens")
        self.resume_changes: list[dict] = []  # flags changed on purpose at a resume (RESUME_SAFE_CHANGES)
        self._new_changes: list[dict] = []
        seed_python_numpy(args.seed)
        self.step, self.elapsed, self.tokens_seen = 0, 0.0, 0
        self.ema = None
        self.ema_steps = 0
        self.ema_loaded = False  # True once the EMA weights replaced the raw ones for good (the end)
        self.lr_mult = 1.0
        self._first_bad: int | None = None
        self.val_history: list[dict] = []
        self._val_batch_estimate: float | None = None  # final_val_estimate's one-batch timing

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes files."""
        return self.rank == 0

    def agree(self, elapsed: float, stop: bool) -> tuple[float, bool]:
        """What every rank uses: rank 0's wall-clock (so all take the same steps with the same LR)
        and whether any rank was asked to stop."""
        return elapsed, stop

    def track_losses(self, ar_v, cdm_v) -> None:
        """Note whether this step's losses are finite (a backend may do this without a host sync)."""
        if self._first_bad is None:
            ar = self.scalar(ar_v)
            cdm = self.scalar(cdm_v) if cdm_v is not None else 0.0
            if not (math.isfinite(ar) and math.isfinite(cdm)):
                self._first_bad = self.step

    def first_nonfinite_step(self) -> int | None:
        return self._first_bad

    def weights_finite(self) -> bool:
        return all(np.isfinite(w).all() for w in self.weights_numpy().values())

    def check_finite(self, before_save: bool = False) -> None:
        """Stop on a non-finite loss (or, before a save, non-finite weights): the last step
        checkpoint on disk stays the last good state and nothing after it is written."""
        bad = self.first_nonfinite_step()
        if bad is None and before_save and not self.weights_finite():
            bad = self.step
        if bad is not None:
            last = newest_step_checkpoint(self.ckpt_dir, self.checkpoint_suffix)
            raise FloatingPointError(
                f"non-finite loss or weights at step {bad}: training stopped; the last good checkpoint is "
                f"{last if last else 'none (no step checkpoint was written before it)'}")

    def mean_over_ranks(self, values: list[float]) -> list[float]:
        return values

    def warm_up(self, batch: int) -> bool:
        """Compile (or otherwise prepare) the step before the clock starts, leaving the weights, the
        optimizer state, the stream and every RNG exactly as they were. Returns whether it did
        anything. The original counted compilation against the 540 s budget; here it is not."""
        return False

    def rank_weight_spread(self) -> float:
        """Largest weight difference between ranks (0.0: identical)."""
        return 0.0

    # ------------------------------------------------------------------ shared pieces
    def resume_target(self) -> Path | None:
        """The step checkpoint --resume names (None: a new run), checked to exist and to be this
        backend's kind before anything is built; its content is checked by load_state."""
        from meadow_golf.model.checkpoint import CheckpointError

        args = self.args
        if not args.resume:
            return None
        if args.resume == "auto":
            return newest_step_checkpoint(self.ckpt_dir, self.checkpoint_suffix)
        path = Path(args.resume)
        if not path.is_file():
            raise CheckpointError(f"{path}: --resume checkpoint not found" if not path.exists()
                                  else f"{path}: --resume is not a file")
        if path.suffix != self.checkpoint_suffix:
            raise CheckpointError(f"{path}: not a {self.backend} step checkpoint (step_<N>{self.checkpoint_suffix})")
        return path

    def check_resume(self, path: Path, state: dict) -> None:
        """Refuse to continue a checkpoint's run with other settings, naming only what differs:
        model config keys, the flags that define the run (all but RESUME_FREE_FLAGS), and the
        tokenizer (by sha256, when the checkpoint records it). The RESUME_SAFE_CHANGES are allowed
        and kept in self._new_changes for the record."""
        from meadow_golf.model.checkpoint import CheckpointError

        differ = []
        saved_cfg, cfg = state.get("config") or {}, self.config.to_dict()
        # A key the checkpoint lacks is a field added after it was written (mask_token): it was
        # trained with that field's default, which every new field keeps as the old behaviour.
        defaults = GPTConfig().to_dict()
        for key in sorted(set(saved_cfg) | set(cfg)):
            if saved_cfg.get(key, defaults.get(key)) != cfg.get(key):
                differ.append(f"{key} {saved_cfg.get(key)} (checkpoint) != {cfg.get(key)} (flags)")
        model_flags = {a for a in vars(self.args) if a in cfg or a.startswith("no_")}
        saved_args, now = state.get("args") or {}, vars(self.args)
        changes = []
        for key in sorted(set(saved_args) & set(now)):
            if key in RESUME_FREE_FLAGS or key in model_flags or saved_args[key] == now[key]:
                continue
            if key in RESUME_SAFE_CHANGES:
                changes.append({"flag": key, "from": saved_args[key], "to": now[key], "at_step": state.get("step")})
            else:
                differ.append(f"--{key} {saved_args[key]} (checkpoint) != {now[key]} (flags)")
        saved_tok = state.get("tokenizer")
        if isinstance(saved_tok, dict) and saved_tok.get("sha256") != self.tokenizer["sha256"]:
            differ.append(f"tokenizer {data_mod.describe_tokenizer(saved_tok)} (checkpoint) != "
                          f"{data_mod.describe_tokenizer(self.tokenizer)} (flags)")
        if differ:
            raise CheckpointError(f"{path}: checkpoint does not match the flags: {'; '.join(differ)} "
                                  "(resume with the run's own settings, or start a new run)")
        steps = next((c for c in changes if c["flag"] == "steps"), None)
        if steps and 0 < self.args.steps < int(state.get("step") or 0):
            raise CheckpointError(f"{path}: --steps {self.args.steps} is below the {state.get('step')} steps "
                                  "the checkpoint has already trained")
        self._new_changes = changes

    def counters(self) -> dict:
        """The backend-independent part of a step checkpoint."""
        return {"config": self.config.to_dict(), "args": vars(self.args), "backend": self.backend,
                "tokenizer": self.tokenizer, "resume_changes": self.resume_changes,
                "stream": self.stream.state(), "step": self.step, "elapsed": self.elapsed,
                "tokens_seen": self.tokens_seen, "ema_steps": self.ema_steps, "val_history": self.val_history}

    def load_counters(self, state: dict) -> None:
        self.stream.load_state(state["stream"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.tokens_seen, self.ema_steps = state["tokens_seen"], state["ema_steps"]
        self.val_history = state["val_history"]
        self.resume_changes = list(state.get("resume_changes") or []) + self._new_changes

    def update_ema(self) -> None:
        """After the update of 0-based step k = self.step - 1: the shadow is created as a copy at
        k == ema_start_step and averaged in at every later step (the original's timing)."""
        if not ema_due(self.args, self.step - 1):
            return
        self.ema_update(self.args.ema_decay)
        self.ema_steps += 1

    def validate(self, log: RunLog) -> dict:
        """Pure-AR validation; while an EMA exists it runs on the EMA weights (as the original's)."""
        t0 = time.perf_counter()
        on_ema = self.ema is not None
        token = self.swap_in_ema() if on_ema and not self.ema_loaded else None
        try:
            res = {"step": self.step, **self.val_bpb(), "ema": on_ema, "val_seconds": time.perf_counter() - t0}
        finally:
            if token is not None:
                self.restore_weights(token)
        self.val_history.append(res)
        log.record("val", step=self.step, val_loss=res["val_loss"], val_bpb=res["val_bpb"],
                   val_tokens=res["val_tokens"], val_bytes=res["val_bytes"], ema=on_ema, train_time=self.elapsed)
        return res

    def log_header(self, log: RunLog) -> None:
        args = self.args
        log.note("config:" + json.dumps({"model": self.config.to_dict(), "args": vars(args),
                                          "backend": self.backend, "device": self.device_name(),
                                          "params": self.num_params(), "tokenizer": str(self.tokenizer_path),
                                          **self.extra_results()}, sort_keys=True))
        ema_text = (f"ema:on decay:{args.ema_decay} start_step:{ema_start_step(args)}"
                    if args.ema_decay > 0 else "ema:off")
        passes = 1 + (args.cdm_weight > 0) + (args.retro_alpha > 0)
        log.note(f"{ema_text} cdm_weight:{args.cdm_weight} retro_alpha:{args.retro_alpha} passes_per_step:{passes}")
        gone = departures(args)
        log.note(f"lr_schedule:{args.lr_schedule} clock:{args.clock} muon_clip:{args.muon_clip} "
                 f"departures_from_original:{','.join(gone) if gone else 'none'}")

    def final_val_estimate(self) -> float:
        """Seconds the final validation should take. It runs after the budget/step cap ends, so the
        time fraction alone leaves it out of the ETA (minutes on a big --val_tokens). Every
        validation scores the same windows, so the mean of those already timed (val_history,
        kept across a resume) predicts it. With none timed yet (--val_every 0), one batch of
        windows per rank is timed once and scaled to the whole set (val_bpb reads self.val_tokens;
        a first call's overhead makes it err high). That one batch is on the run's clock, as
        validations are under --clock original."""
        timed = [v["val_seconds"] for v in self.val_history if "val_seconds" in v]
        if timed:
            return sum(timed) / len(timed)
        if self._val_batch_estimate is None:
            seq_len = self.args.seq_len
            n_windows = (len(self.val_tokens) - 1) // seq_len
            part = min(n_windows, self.args.val_batch_size * self.world_size)
            full = self.val_tokens
            self.val_tokens = full[: part * seq_len + 1]
            t0 = time.perf_counter()
            try:
                self.val_bpb()
            finally:
                self.val_tokens = full
            self._val_batch_estimate = (time.perf_counter() - t0) * n_windows / part
        return self._val_batch_estimate

    def log_step(self, log: RunLog, ar_v, cdm_v, since: tuple[float, int]) -> tuple[float, int]:
        """One `train` record; fails loudly on a non-finite loss. Returns the new (time, tokens) mark."""
        args = self.args
        # Each rank's losses are its part of the global-batch loss; the global one is their mean.
        self.check_finite()
        ar, cdm = self.mean_over_ranks([self.scalar(ar_v), self.scalar(cdm_v) if cdm_v is not None else 0.0])
        cdm = cdm if cdm_v is not None else None
        now = time.perf_counter()
        tok_s = (self.tokens_seen - since[1]) / max(now - since[0], 1e-9)
        frac = progress(self.step, self.elapsed, args)
        # The rest of the training at the pace so far, plus the final validation (not in frac).
        eta_val = self.final_val_estimate()
        eta = self.elapsed * (1 - frac) / max(frac, 1e-9) + eta_val
        total = str(args.steps) if args.steps > 0 else "budget"
        fields = dict(step=f"{self.step}/{total}", train_loss=ar + args.cdm_weight * (cdm or 0.0), ar_loss=ar)
        if cdm is not None:
            fields["cdm_loss"] = cdm
        log.record("train", **fields, lr_mult=self.lr_mult,
                   train_time=self.elapsed, tokens=self.tokens_seen, tok_s=tok_s, eta_s=eta, eta_val_s=eta_val)
        return now, self.tokens_seen

    # ------------------------------------------------------------------ loop
    def run(self) -> dict | None:
        """Train to the end (-> results) or until SIGTERM/SIGINT (-> None, after a step checkpoint)."""
        stop = StopRequest()
        try:
            return self._run(stop)
        finally:
            stop.restore()

    def save_checked(self, name: str) -> None:
        self.check_finite(before_save=True)
        if self.is_main:
            self.save_step(name)

    def _run(self, stop: StopRequest) -> dict | None:
        """The original's loop order (METHOD.md §4), step k = self.step (updates done so far):
        top of the step: read the clock; stop for good if k == --steps or the budget is spent; else
        validate when k % val_every == 0 (k = 0 included); then the LR, the step, the EMA, the log
        and the step checkpoint. --clock original counts everything from the loop's start (lazy
        compilation in the first step too); --clock train_only counts the steps alone."""
        args = self.args
        resume_from = self.resume_from
        # The checkpoint is read (and refused) before the folder or any log file is created.
        if resume_from is not None:
            self.load_state(resume_from)
        removed = remove_old_run(self.ckpt_dir) if resume_from is None and args.overwrite and self.is_main else []
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        log = RunLog(self.ckpt_dir, enabled=self.is_main, append=resume_from is not None)
        if removed:
            log.note(f"overwrite: removed the previous run's {', '.join(removed)}")
        if resume_from is not None:
            log.note(f"resumed_from:{resume_from.resolve()} step:{self.step} elapsed:{self.elapsed:.1f}")
            for c in self._new_changes:
                log.note(f"resume_changed:--{c['flag']} from:{c['from']} to:{c['to']} at_step:{c['at_step']}"
                         + (f" ema_start_step:{ema_start_step(args)}"
                            if c["flag"] == "steps" and args.ema_start_step < 0 and args.ema_decay > 0 else ""))
        self.log_header(log)
        batch = args.batch_tokens // args.seq_len // self.world_size  # this rank's rows
        original_clock = args.clock == "original"
        if not original_clock:
            t0 = time.perf_counter()
            if self.warm_up(batch):
                log.record("warmup", compile_seconds=time.perf_counter() - t0, counted_in_budget=False)
        # Step k's checkpoint is written after its update and before step k's validation (which
        # belongs to the top of the next step), so a resumed run does that validation itself.
        saved_at = self.step if resume_from is not None else -1  # a stop right away need not re-save
        clock_base, clock_start = self.elapsed, time.perf_counter()
        mark = (time.perf_counter(), self.tokens_seen)
        # --log_every_secs is read on the run's clock as every rank agreed it (rank 0's), so all
        # ranks decide alike and reach log_step's collective together; a wall clock per rank
        # could differ by a step and hang DDP. Decided at the top, logged after that step.
        logged_at = self.elapsed
        while True:
            if original_clock:
                self.elapsed = clock_base + time.perf_counter() - clock_start
            self.elapsed, stop_now = self.agree(self.elapsed, stop.requested)
            log_by_time = args.log_every_secs > 0 and self.elapsed - logged_at >= args.log_every_secs
            if (args.steps > 0 and self.step >= args.steps) or \
                    (args.train_budget_secs > 0 and self.elapsed >= args.train_budget_secs):
                break
            if stop_now:
                if saved_at != self.step:
                    self.save_checked(f"step_{self.step}")
                log.note(f"stopped:{stop.signal_name or 'signal'} step:{self.step} "
                         f"checkpoint:{(self.ckpt_dir / f'step_{self.step}{self.checkpoint_suffix}').resolve()} "
                         f"resume_with: {resume_command()}")
                log.close()
                return None
            if args.val_every > 0 and self.step % args.val_every == 0:
                self.validate(log)
            t0 = time.perf_counter()
            # The time rule reads the clock again after the validation, as the original does.
            now = clock_base + t0 - clock_start if original_clock else self.elapsed
            self.lr_mult = schedule_lr(args, self.step, now)
            self.set_schedule(self.lr_mult, muon_momentum(self.step, warmup_steps=args.momentum_warmup_steps))
            x, y = self.stream.next_batch(batch, args.seq_len, self.rank, self.world_size)
            ar_v, cdm_v = self.train_step(x, y)
            self.step += 1
            self.tokens_seen += args.batch_tokens
            self.track_losses(ar_v, cdm_v)
            if not original_clock:
                self.elapsed += time.perf_counter() - t0
            self.update_ema()
            if self.step % args.log_every == 0 or self.step == 1 or self.step == args.steps or log_by_time:
                mark = self.log_step(log, ar_v, cdm_v, mark)
                logged_at = self.elapsed
            if args.save_every > 0 and self.step % args.save_every == 0 and self.step != args.steps:
                self.save_checked(f"step_{self.step}")
                saved_at = self.step
        return self.finish(log)

    def finish(self, log: RunLog) -> dict:
        args = self.args
        ema_used = self.ema is not None
        if ema_used:
            self.load_ema()  # for good: the final validation and every final save are the EMA weights
            self.ema_loaded = True
        log.note(f"ema_used:{str(ema_used).lower()} ema_steps:{self.ema_steps}")
        self.check_finite(before_save=True)
        final = self.validate(log)
        spread = self.rank_weight_spread()
        if not self.is_main:
            return {}
        self.save_step("step_final")
        weights = self.weights_numpy()
        save_path = Path(args.save_path) if args.save_path else self.ckpt_dir / "final_model.npz"
        save_npz(save_path, weights, self.config.to_dict(), tokenizer=self.tokenizer)
        artifact = self.ckpt_dir / "final_model.int6.lzma"
        artifact_bytes = save_int6_artifact(artifact, weights, self.config.to_dict(), tokenizer=self.tokenizer)
        log.record("artifact", artifact_bytes=artifact_bytes, limit_bytes=ARTIFACT_LIMIT_BYTES,
                   fits=artifact_bytes <= ARTIFACT_LIMIT_BYTES)
        results = {
            # The LAST validation (the original reported the best one seen; both are here).
            "final_val_bpb": final["val_bpb"], "final_val_loss": final["val_loss"],
            "best_val_bpb": min(v["val_bpb"] for v in self.val_history),
            "val_tokens": final["val_tokens"], "val_bytes": final["val_bytes"],
            "steps": self.step, "tokens_seen": self.tokens_seen, "train_seconds": self.elapsed,
            "config": {"model": self.config.to_dict(), "train": vars(args)},
            "params": self.num_params(), "cdm_weight": args.cdm_weight,
            "ema": {"enabled": args.ema_decay > 0, "used": ema_used, "steps": self.ema_steps,
                    "decay": args.ema_decay, "start_step": ema_start_step(args) if args.ema_decay > 0 else None},
            "rules": {"lr_schedule": args.lr_schedule, "clock": args.clock, "muon_clip": args.muon_clip,
                      "departures_from_original": departures(args)},
            "tokenizer": self.tokenizer, "resume_changes": self.resume_changes,
            "val_history": self.val_history, "backend": self.backend, "device": self.device_name(),
            "world_size": self.world_size, "rank_weight_spread": spread,
            "npz": str(save_path), "artifact": str(artifact), "artifact_bytes": artifact_bytes,
            "git_commit": git_commit(REPO_ROOT), "versions": versions(), **self.extra_results(),
        }
        atomic_write_bytes(self.ckpt_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
        log.record("final", step=self.step, final_val_bpb=final["val_bpb"], train_time=self.elapsed,
                   tokens=self.tokens_seen, results=str(self.ckpt_dir / "results.json"))
        log.close()
        return results
