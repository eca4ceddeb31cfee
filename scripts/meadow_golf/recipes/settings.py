"""A recipe's settings, read from the environment once and checked before any cell runs.

Environment (defaults in brackets). Relative paths given by you are taken from the current
directory; the defaults are computed from the repository root.
  PRESET [cpu]          h100 | mac | cpu | smoke (recipes/presets.py; the table is printed at start)
  BACKEND [torch; mlx for PRESET=mac]  torch: train_cdm.py | mlx: train_cdm_mlx.py. Evaluation is
                        eval_cf.py --backend BACKEND on the cell's final_model.npz, so BACKEND=mlx
                        trains, evaluates and summarizes without torch installed.
  MATCH [wallclock]     wallclock: every cell of a scale gets the same budget (the original). With
                        BUDGET_SECS=0 the step cap decides and MATCH reads `steps` (MATCH=steps needs
                        BUDGET_SECS=0). tokens: each control (w=0, suffix _tok) trains for exactly
                        the training tokens of the shared cell it is matched to (read from its
                        results.json): run_6 to the w=MATCH_WEIGHT cell of its scale and seed,
                        run_seeds to the w=SEED_WEIGHT cell of its seed (the first of SEEDS otherwise).
  MATCH_WEIGHT [0.3]    run_6 with MATCH=tokens: the shared weight the controls match
  DATA_DIR [preset]     prepared folder (scripts/prepare_data.py)
  TOKENIZER []          SentencePiece model; empty: the one named in DATA_DIR/meta.json
  CKPT_DIR [runs/<experiment>/$PRESET/cells]  one folder per cell (step checkpoints,
                        final_model.npz, results.json, eval_cf.json, cell.json)
  LOG_DIR [runs/<experiment>/$PRESET/logs]    <cell>.train.log / <cell>.eval.log
  OUT_DIR [runs/<experiment>/$PRESET/<recipe>] results.md/.json/.png (scripts/summarize.py); a
                        committed record is never a default, so a rerun never finds its cells "done"
  COMPARE_TO []         a record's folder (or its results.json) printed beside the rerun's numbers
  BUDGET_SECS [preset]  wall-clock budget per cell (0: none), on the original's clock
  STEPS [preset]        step cap per cell and the nominal length of the EMA start and step warmdown
  DEVICE [preset]       auto | cuda | mps | cpu
  NPROC [1]             > 1: train_cdm.py under torchrun (DDP), one process per cell; torch only
  FUSE_PASSES [0]       1: --fuse_passes (torch)   COMPILE [1 for h100; 0 elsewhere]: --compile
  EVAL_N_SEQS, EVAL_SEQ_LEN [preset]  random evaluation windows per cell, targets per window
  DECODERS [the recipe's]  eval_cf.py --decoders of every cell
  THREADS [1 for cpu and smoke; the library default for h100 and mac]  OMP/MKL threads
  PYTHON [python]       the interpreter the bash entry point runs
  VERBOSE [0]           1: the trainer/evaluator output on the terminal too
  HEARTBEAT_SECS [60]   a `[beat ]` line every N seconds while a cell runs (0: none)
  NOISE [uniform]       uniform | absorbing: the corruption of every shared cell (suffix _abs)
  CDM_LOSS [plain]      plain | elbo: --cdm_loss of the absorbing cells (suffix _abs_elbo)
  ELBO_SAMPLES [0]      K > 0: eval_cf.py --elbo_samples K on every absorbing cell
  RUNS_NAME [the experiment folder's name without its date]  the folder under runs/ of the defaults
                        (the 2026-12-01 recipes fix theirs: share_ratio_and_scale, absorbing_noise)
  RUNS_PER_DATA [0]     1: the default folders add the data folder's name (run_noise always does)
Standard library only (the trainer and evaluator are imported when a cell runs).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from meadow_golf.common.paths import can_write_in, nearest_existing
from meadow_golf.common.python_deps import missing, missing_line
from meadow_golf.model.noise import CDM_LOSSES, NOISES
from meadow_golf.recipes.presets import PRESETS, Preset, RecipeError

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DECODERS = "ar,cf_published,cf_valid,cf_valid_mix,cf_bidir_skeleton,cf_bidir_skeleton_mix"
NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")
INT = re.compile(r"^[0-9]+$")
POSITIVE = re.compile(r"^[1-9][0-9]*$")


def is_zero(value: str) -> bool:
    return bool(re.match(r"^0+(\.0+)?$", value))


def check_number(name: str, value: str) -> str:
    if not NUMBER.match(value):
        raise RecipeError(f"{name}={value}: expected a non-negative number")
    return value


def check_int(name: str, value: str) -> str:
    if not INT.match(value):
        raise RecipeError(f"{name}={value}: expected a non-negative integer")
    return value


def words(env: dict, name: str, default: str) -> list[str]:
    """A space-separated list; an empty string given by the user stays empty ("" = none)."""
    return env.get(name, default).split()


@dataclass
class Settings:
    """What recipe_init resolved: every value as the cells' recipes and the printed table use it."""

    env: dict
    preset: Preset
    backend: str
    match: str
    match_weight: str
    data_dir: Path
    tokenizer: str
    ckpt_dir: Path
    log_dir: Path
    out_dir: Path
    budget_secs: str
    steps: str
    device: str
    nproc: int
    compile: bool
    fuse_passes: bool
    eval_n_seqs: int
    eval_seq_len: int
    decoders: str
    threads: str
    verbose: bool
    heartbeat_secs: int
    noise: str
    cdm_loss: str
    elbo_samples: int
    compare_to: str
    exp_dir: Path
    # The setting each folder was given by, for error lines (the quickstart sets all from RUN_DIR).
    dir_vars: dict = field(default_factory=lambda: {"ckpt": "CKPT_DIR", "log": "LOG_DIR", "out": "OUT_DIR"})

    def get(self, name: str, default: str) -> str:
        """A plan's own variable (SCALES, SEEDS, GRID_WEIGHTS, ...), unset meaning the default."""
        return self.env.get(name) or default

    def words(self, name: str, default: str) -> list[str]:
        return words(self.env, name, default)

    @property
    def eval_flags(self) -> list[str]:
        return ["--n_seqs", str(self.eval_n_seqs), "--seq_len", str(self.eval_seq_len),
                "--batch_size", str(self.preset.eval_batch), "--decoders", self.decoders]

    @property
    def tokenizer_flags(self) -> list[str]:
        return ["--tokenizer_path", self.tokenizer] if self.tokenizer else []

    @property
    def trainer_name(self) -> str:
        return "train_cdm.py" if self.backend == "torch" else "train_cdm_mlx.py"


def check_writable(path: Path, var: str) -> None:
    """A folder the recipe will write: refused in one line before any compute when it (or the
    nearest folder above it that exists) cannot be written; nothing is created here."""
    probe = nearest_existing(path)
    if not probe.is_dir():
        raise RecipeError(f"{var}={path}: {probe} is not a folder")
    if not can_write_in(probe):
        raise RecipeError(f"{var}={path}: {probe} is not writable (choose another {var})")


def abs_path(value: str, cwd: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else cwd / path


def runs_name(exp_dir: Path) -> str:
    """The experiment folder's name without its date: runs/<this>/..."""
    return re.sub(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}_", "", exp_dir.name)


def resolve(env: dict, exp_dir: Path, kind: str, *, decoders: str = DEFAULT_DECODERS, elbo_samples: str = "0",
            runs: str | None = None, runs_per_data: bool = False, cwd: Path | None = None,
            check_deps: bool = True) -> Settings:
    """recipe_init: environment defaults, validation and the preset. kind names OUT_DIR's folder."""
    cwd = cwd or Path.cwd()
    get = lambda name, default="": env.get(name) or default  # noqa: E731  (unset or empty: the default)
    preset_name = get("PRESET", "cpu")
    if preset_name not in PRESETS:
        raise RecipeError(f"PRESET={preset_name}: unknown preset; choose h100, mac, cpu or smoke")
    preset = PRESETS[preset_name]
    backend = get("BACKEND", "mlx" if preset_name == "mac" else "torch")
    if backend not in ("torch", "mlx"):
        raise RecipeError(f"BACKEND={backend}: unknown backend; choose torch or mlx")
    match = get("MATCH", "wallclock")
    if match not in ("wallclock", "tokens", "steps"):
        raise RecipeError(f"MATCH={match}: unknown matching; choose wallclock, tokens or steps")
    nproc = get("NPROC", "1")
    if not POSITIVE.match(nproc):
        raise RecipeError(f"NPROC={nproc}: expected a positive integer")
    if nproc != "1" and backend != "torch":
        raise RecipeError(f"NPROC={nproc}: multi-process training (torchrun/DDP) is torch only; "
                          f"use NPROC=1 with BACKEND={backend}")
    data_dir = abs_path(get("DATA_DIR"), cwd) if get("DATA_DIR") else ROOT / preset.data_dir
    tokenizer = str(abs_path(get("TOKENIZER"), cwd)) if get("TOKENIZER") else ""
    base = ROOT / "runs" / (runs or get("RUNS_NAME") or runs_name(exp_dir)) / preset_name
    if runs_per_data or env.get("RUNS_PER_DATA") == "1":
        base = base / data_dir.name
    fuse = get("FUSE_PASSES", "0")
    if fuse != "0" and backend != "torch":
        raise RecipeError(f"FUSE_PASSES=1 is torch only (BACKEND={backend})")
    budget = check_number("BUDGET_SECS", get("BUDGET_SECS", preset.budget_secs))
    heartbeat = check_int("HEARTBEAT_SECS", get("HEARTBEAT_SECS", "60"))
    if is_zero(budget):  # without a clock the step cap decides: say so rather than call it wall-clock
        match = "steps" if match == "wallclock" else match
    elif match == "steps":
        raise RecipeError("MATCH=steps: the step cap decides only without a clock; set BUDGET_SECS=0")
    steps = check_int("STEPS", get("STEPS", preset.steps))
    n_seqs = check_int("EVAL_N_SEQS", get("EVAL_N_SEQS", str(preset.eval_n_seqs)))
    seq_len = check_int("EVAL_SEQ_LEN", get("EVAL_SEQ_LEN", str(preset.eval_seq_len)))
    if int(seq_len) < 2:
        raise RecipeError(f"EVAL_SEQ_LEN={seq_len}: a window needs at least 2 targets")
    threads = env["THREADS"] if "THREADS" in env else preset.threads
    if threads and not POSITIVE.match(threads):
        raise RecipeError(f"THREADS={threads}: expected a positive integer (or empty)")
    match_weight = check_number("MATCH_WEIGHT", get("MATCH_WEIGHT", "0.3"))
    noise = get("NOISE", "uniform")
    if noise not in NOISES:
        raise RecipeError(f"NOISE: unknown noise '{noise}'; choose {' or '.join(NOISES)}")
    cdm_loss = get("CDM_LOSS", "plain")
    if cdm_loss not in CDM_LOSSES:
        raise RecipeError(f"CDM_LOSS={cdm_loss}: choose {' or '.join(CDM_LOSSES)}")
    elbo = check_int("ELBO_SAMPLES", get("ELBO_SAMPLES", elbo_samples))
    compare_to = str(abs_path(get("COMPARE_TO"), cwd)) if get("COMPARE_TO") else ""
    if compare_to and not Path(compare_to).exists():
        raise RecipeError(f"COMPARE_TO={compare_to} does not exist (a record folder holding results.json)")
    if steps == "0" or int(steps) == 0:
        raise RecipeError("STEPS=0: the original's rules need a nominal step count (its recipe used 9999)")
    device = get("DEVICE", preset.device)
    if device not in ("auto", "cuda", "mps", "cpu"):
        raise RecipeError(f"DEVICE={device}: choose auto, cuda, mps or cpu")
    settings = Settings(
        env=env, preset=preset, backend=backend, match=match, match_weight=match_weight, data_dir=data_dir,
        tokenizer=tokenizer, ckpt_dir=abs_path(get("CKPT_DIR"), cwd) if get("CKPT_DIR") else base / "cells",
        log_dir=abs_path(get("LOG_DIR"), cwd) if get("LOG_DIR") else base / "logs",
        out_dir=abs_path(get("OUT_DIR"), cwd) if get("OUT_DIR") else base / kind,
        budget_secs=budget, steps=steps, device=device, nproc=int(nproc),
        compile=get("COMPILE", preset.compile) == "1", fuse_passes=fuse == "1", eval_n_seqs=int(n_seqs),
        eval_seq_len=int(seq_len), decoders=get("DECODERS", decoders), threads=threads,
        verbose=get("VERBOSE", "0") == "1", heartbeat_secs=int(heartbeat), noise=noise, cdm_loss=cdm_loss,
        elbo_samples=int(elbo), compare_to=compare_to, exp_dir=exp_dir)
    if check_deps:
        check_python_deps(settings, env.get("PYTHON") or "python")
    if not (settings.data_dir / "meta.json").is_file():
        raise RecipeError(f"DATA_DIR={settings.data_dir}: not a prepared data folder (no meta.json); prepare one "
                          "with: python scripts/prepare_data.py shakespeare --out DIR (or fineweb-v4096)")
    return settings


def required_modules(backend: str) -> tuple[list[str], str]:
    """The modules a recipe's steps import, and the extra that installs them: the trainer of the
    backend (eval_cf.py --backend mlx needs no torch), the data readers and the summary's plot."""
    return [backend if backend == "torch" else "mlx", "numpy", "sentencepiece", "matplotlib"], backend


def check_python_deps(settings: Settings, python_label: str) -> None:
    """One line before the first cell if a module is missing, naming the extra that installs it."""
    modules, extra = required_modules(settings.backend)
    lacking = missing(modules)
    if lacking:
        line = missing_line(lacking, extra=extra, python_label=f"PYTHON={python_label}")
        raise RecipeError(line.removeprefix("error: "))


def apply_threads(settings: Settings) -> None:
    """THREADS as OMP/MKL threads: set before torch is first imported (the cells run in this process)."""
    if settings.threads:
        os.environ["OMP_NUM_THREADS"] = settings.threads
        os.environ["MKL_NUM_THREADS"] = settings.threads
        torch = sys.modules.get("torch")  # already imported (a test, an earlier recipe): set it directly
        if torch is not None:
            torch.set_num_threads(int(settings.threads))
