"""What the evaluators (eval_cf.py, leakage_test.py, gen_test.py; entropy_floor.py's windows) share:
exit codes and one-line errors, the flags that complete a checkpoint and choose a backend, loading
a checkpoint, the data and its tokenizer check, the evaluation windows, the output paths and
their checks, the JSON writer and the progress line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from meadow_golf.data import loader as data_mod
from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.eval import cf
from meadow_golf.eval import cf_original
from meadow_golf.eval.backends import BACKENDS
from meadow_golf.model.checkpoint import ORIGINAL_ARCHS, CheckpointError, check_arch_flags, read_checkpoint

# The window offsets get their own stream: default_rng([seed, WINDOW_STREAM]) is unrelated to
# default_rng(seed), which cf.draw_fills uses for the random fill.
WINDOW_STREAM = 0x77696E64  # "wind"


# Exit codes of eval_cf.py, leakage_test.py and gen_test.py.
EXIT_OK = 0
EXIT_BAD_INPUT = 1  # one `error: ...` line on stderr, nothing written
EXIT_CHECK_FAILED = 2  # the run completed and wrote its JSON, but a check it makes failed


class UsageError(ValueError):
    """Bad command-line input (reported as one `error:` line)."""


def error_line(e: BaseException) -> str:
    """The `error: ...` line for a bad input. Messages from libraries (sentencepiece, torch) may
    span several lines; the contract is one line, so whitespace runs are folded."""
    return "error: " + " ".join(str(e).split())


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as UsageError (one `error:` line from main)
    instead of printing the usage block and exiting."""

    def error(self, message):
        raise UsageError(message)



def window_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, WINDOW_STREAM])


def random_offsets(n_tokens: int, window_len: int, n_windows: int, seed: int, where: str = "the data") -> np.ndarray:
    """n_windows offsets drawn uniformly (with replacement) so that each window fits."""
    if n_tokens < window_len:
        raise UsageError(f"{where}: windows of {window_len} tokens do not fit in its {n_tokens} validation tokens")
    return window_rng(seed).integers(0, n_tokens - window_len + 1, size=n_windows, dtype=np.int64)


def full_val_offsets(n_tokens: int, seq_len: int, where: str = "the data") -> np.ndarray:
    """Offsets of every non-overlapping window k = tokens[k*T : k*T+T+1] (as ar_nll_sum)."""
    n_windows = (n_tokens - 1) // seq_len
    if n_windows < 1:
        raise UsageError(f"{where}: windows of {seq_len + 1} tokens do not fit in its {n_tokens} validation tokens")
    return np.arange(n_windows, dtype=np.int64) * seq_len


def gather_windows(tokens: np.ndarray, offsets: np.ndarray, window_len: int) -> np.ndarray:
    """int64 (N, window_len): tokens[o : o + window_len] for each offset o."""
    return np.asarray(tokens, dtype=np.int64)[offsets[:, None] + np.arange(window_len)[None, :]]


def windows_digest(windows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(windows, dtype="<i8").tobytes()).hexdigest()


def add_checkpoint_flags(p: argparse.ArgumentParser) -> None:
    """The flags that complete an original record's checkpoint (see checkpoint.read_checkpoint)."""
    p.add_argument("--xsa_last_n", type=int, default=None,
                   help="original (config-less) checkpoints: XSA on the last N blocks (the shapes cannot show it)")
    p.add_argument("--original_arch", default=None, choices=sorted(ORIGINAL_ARCHS),
                   help="original checkpoints: the record's 5L (xsa 2, d 256) or 11L (xsa 4, d 512) model; "
                        "the shapes must agree")


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    """--backend and --device, the same in the three evaluators."""
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="framework that runs the model: torch (default) or mlx (imports no torch)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="auto: torch picks cuda, then mps, then cpu; mlx uses its default device")


def check_checkpoint_flags(args) -> None:
    try:
        check_arch_flags(args.xsa_last_n, args.original_arch)
    except ValueError as e:
        raise UsageError(str(e)) from None


def load_checkpoint(path: str, backend, xsa_last_n: int | None = None, original_arch: str | None = None):
    """(model, config, how it was read) from a .npz or .pt, ours (the stored config builds the
    model) or the original record's (config from the shapes and the two flags).

    backend: a backend_base.EvalBackend (backends.load_backend)."""
    try:
        loaded = read_checkpoint(Path(path), xsa_last_n=xsa_last_n, original_arch=original_arch)
        model, config = backend.build(loaded.config, loaded.weights)
        return model, config, loaded.describe()
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, ArithmeticError) as e:
        # The file was read, but its config or weights do not make this model (another model's
        # checkpoint, unknown config keys, missing or mis-shaped weights).
        raise CheckpointError(f"{path}: does not make a model ({type(e).__name__}: {e})") from None


def load_data(data_dir: str, tokenizer_path: str | None, model_vocab: int, val_tokens: int,
              first_shard: bool = False):
    """(byte tables, tokenizer path, validation tokens), with the vocabularies cross-checked.

    first_shard: the whole of fineweb_val_000000.bin and nothing else, as the original record's
    evaluator read it (val_tokens is then ignored)."""
    shards = data_mod.list_shards(data_dir, "val")  # a missing folder or no shards: say so before anything else
    tokenizer = data_mod.resolve_tokenizer(data_dir, tokenizer_path)
    tables = data_mod.load_byte_tables(tokenizer)
    data_mod.check_vocab(data_dir, tables, tokenizer, model_vocab)
    # check_vocab made the tokenizer's vocabulary the smaller one. Bytes come from its tables, so
    # every validation id must be one of its pieces (and so also fits the model).
    if first_shard:
        shard = Path(data_dir) / cf_original.VAL_SHARD
        if shard not in shards:
            raise data_mod.ShardError(f"{shard}: not found (the original protocol reads this shard)")
        tokens = np.asarray(data_mod.read_shard(shard), dtype=np.int64)
        data_mod.check_token_range(tokens, tables.vocab_size, str(shard))
        return tables, tokenizer, tokens
    tokens = data_mod.load_validation(data_dir, val_tokens, tables.vocab_size)
    return tables, tokenizer, tokens


def check_tokenizer(checkpoint: str, checkpoint_format: dict, tokenizer: Path, tables) -> dict:
    """The checkpoint's recorded tokenizer against the data's (by the sha256 of the .model file).

    A mismatch is refused (CheckpointError naming both): ids would be read as other pieces and the
    bytes of METHOD.md §2 counted for other text. A checkpoint that records none (written before
    the record existed, or the original's) is accepted; the returned dict's note says so and
    main prints it after the report."""
    data = data_mod.tokenizer_identity(tokenizer, tables.vocab_size)
    recorded = checkpoint_format.get("tokenizer")
    if recorded is None:
        return {"checked": False, "data": data, "checkpoint": None,
                "note": f"{checkpoint} records no tokenizer, so it was not checked against the data's "
                        f"{data_mod.describe_tokenizer(data)}"}
    if recorded.get("sha256") != data["sha256"]:
        raise CheckpointError(f"{checkpoint}: trained with tokenizer {data_mod.describe_tokenizer(recorded)}, but the "
                              f"data's tokenizer is {data_mod.describe_tokenizer(data)}")
    return {"checked": True, "data": data, "checkpoint": recorded, "note": None}


def print_tokenizer_note(result: dict) -> None:
    note = (result.get("tokenizer_check") or {}).get("note")
    if note:
        print(f"note: {note}", file=sys.stderr)


def write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def default_json_path(checkpoint: str, suffix: str) -> Path:
    """JSON next to the checkpoint: runs/x/final_model.npz -> runs/x/final_model.<suffix>.json."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.{suffix}.json")


class Progress:
    """A progress line with ETA every `every` steps (and at the last one), on stderr."""

    def __init__(self, total: int, label: str, every: int = 4):
        self.total, self.label, self.every = total, label, max(1, every)
        self.start = time.perf_counter()

    def update(self, done: int, detail: str = "") -> None:
        if done % self.every and done != self.total:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        print(f"progress:{self.label} {done}/{self.total} {detail}elapsed_s:{elapsed:.1f} eta_s:{eta:.1f}",
              file=sys.stderr, flush=True)


def parse_decoders(text: str) -> list[str]:
    if text == "all":
        return list(cf.DECODERS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in cf.DECODERS]
    if not names or unknown:
        raise UsageError(f"--decoders: unknown {unknown or 'empty list'}; known: {', '.join(cf.DECODERS)} or all")
    if len(set(names)) != len(names):
        raise UsageError(f"--decoders lists a decoder twice: {text}")
    return names


def check_paths(checkpoint: str | None, json_out: str | None) -> None:
    """Before anything is loaded: the checkpoint exists, and --json_out can be a file."""
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UsageError(f"{checkpoint}: checkpoint not found" if not Path(checkpoint).exists()
                         else f"{checkpoint}: checkpoint is not a file")
    if json_out is not None and Path(json_out).is_dir():
        raise UsageError(f"--json_out {json_out} is a folder, not a file")


def report_header(args, model, config, backend, checkpoint_format, tokenizer, tokenizer_check) -> dict:
    """What both protocols' JSON says about what was scored and what scored it."""
    return {
        "tool": "eval_cf",
        "checkpoint": str(args.checkpoint),
        "checkpoint_format": checkpoint_format,
        "config": config.to_dict(),
        "params": backend.num_params(model),
        "data_dir": str(args.data_dir),
        "tokenizer": str(tokenizer),
        "tokenizer_check": tokenizer_check,
        "backend": backend.name,
        "device": backend.device_label,
        "precision": backend.precision,
    }
