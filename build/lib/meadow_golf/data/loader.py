"""Data access for the experiments, on top of the shared challenge format (challenge_format.py).

Re-exports the shard reader (magic/version/size validated, errors name the file), the training
TokenStream (contiguous, wrapping, DDP slices) and the METHOD.md §2 byte tables + bits per byte, and
adds what the scripts here need: the prepared folder's meta.json, the tokenizer that belongs to
it, and validation tokens checked against the model's vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from meadow_golf.data.challenge_format import (  # noqa: F401  (re-exported for the modules that read data)
    ByteTables,
    ShardError,
    TokenStream,
    bits_per_byte,
    list_shards,
    load_byte_tables,
    load_tokens,
    read_shard,
    read_shard_header,
)


def read_meta(data_dir: str | Path) -> dict | None:
    """The prepared folder's meta.json, or None when the folder has none (e.g. hand-made shards)."""
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise ShardError(f"{path}: unreadable meta.json ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise ShardError(f"{path}: meta.json is not a JSON object")
    return meta


def resolve_tokenizer(data_dir: str | Path, tokenizer_path: str | Path | None) -> Path:
    """--tokenizer_path if given, else the tokenizer named in the data folder's meta.json."""
    if not Path(data_dir).is_dir():
        raise ShardError(f"{data_dir}: data folder does not exist")
    if tokenizer_path:
        return Path(tokenizer_path)
    meta = read_meta(data_dir)
    if meta is None or not isinstance(meta.get("tokenizer"), str):
        raise ShardError(f"{data_dir}: no meta.json naming a tokenizer; pass --tokenizer_path")
    return Path(data_dir) / meta["tokenizer"]


def tokenizer_identity(tokenizer_path: str | Path, vocab_size: int) -> dict:
    """What a checkpoint records of the tokenizer it was trained with: the sha256 of the .model
    file's bytes (the identity: two files with the same pieces in another order map ids to other
    text) and its vocabulary size, plus the path for people (not compared)."""
    path = Path(tokenizer_path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise ShardError(f"{path}: unreadable tokenizer ({e.strerror or e})") from None
    return {"path": str(path.resolve()), "sha256": digest, "vocab_size": int(vocab_size)}


def describe_tokenizer(identity: dict) -> str:
    return f"{identity.get('path')} (sha256 {str(identity.get('sha256'))[:12]}, vocab {identity.get('vocab_size')})"


def check_vocab(data_dir: str | Path, tables: ByteTables, tokenizer_path: Path, model_vocab: int) -> None:
    """Tokenizer, shards' meta.json and model must agree on the vocabulary."""
    if tables.vocab_size > model_vocab:
        raise ValueError(
            f"{tokenizer_path}: tokenizer vocab {tables.vocab_size} is larger than the model vocab {model_vocab}"
        )
    meta = read_meta(data_dir)
    if meta is None or "vocab_size" not in meta:
        return
    meta_path = Path(data_dir) / "meta.json"
    if not isinstance(meta["vocab_size"], int):
        raise ShardError(f"{meta_path}: vocab_size {meta['vocab_size']!r} is not an integer")
    if meta["vocab_size"] != tables.vocab_size:
        raise ValueError(
            f"{tokenizer_path}: tokenizer vocab {tables.vocab_size} does not match "
            f"{meta_path} (vocab_size {meta['vocab_size']}): not the tokenizer of these shards"
        )


def check_token_range(tokens: np.ndarray, vocab: int, where: str) -> None:
    if tokens.size and int(tokens.max()) >= vocab:
        raise ValueError(f"{where}: token id {int(tokens.max())} is out of range for vocab {vocab}")


def check_train_shards(data_dir: str | Path, vocab: int) -> None:
    """One pass over the training shards (memory-mapped) so an out-of-range id fails up front."""
    for path in list_shards(data_dir, "train"):
        check_token_range(np.asarray(read_shard(path)), vocab, str(path))


def load_validation(data_dir: str | Path, n_tokens: int, vocab: int) -> np.ndarray:
    """The first n_tokens+1 validation tokens (all of them if n_tokens <= 0), every id < vocab.

    Checked shard by shard, so an out-of-range id is reported with the shard that holds it."""
    limit = None if n_tokens <= 0 else n_tokens + 1
    parts, total = [], 0
    for path in list_shards(data_dir, "val"):
        part = np.asarray(read_shard(path)[: None if limit is None else max(0, limit - total)], dtype=np.int64)
        check_token_range(part, vocab, str(path))
        parts.append(part)
        total += part.size
        if limit is not None and total >= limit:
            break
    return np.concatenate(parts)


def validation_windows(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """The trainer's validation windows: consecutive, non-overlapping, (N, T+1); window k predicts
    tokens[k*T+1 : (k+1)*T+1] from tokens[k*T : (k+1)*T]. A trailing partial window is dropped."""
    n_windows = (len(tokens) - 1) // seq_len
    if n_windows < 1:
        raise ValueError(f"need at least {seq_len + 1} validation tokens, got {len(tokens)}")
    idx = np.arange(n_windows)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return np.asarray(tokens)[idx]


def validation_result(nll_sum: float, windows: np.ndarray, tables: ByteTables) -> dict:
    """val_loss / val_bpb (METHOD.md §2, no clamping) of a Pure-AR pass over `windows`."""
    n_targets = windows.shape[0] * (windows.shape[1] - 1)
    n_bytes = int(tables.stream_bytes(windows).sum())
    return {"val_loss": nll_sum / n_targets, "val_bpb": nll_sum / (math.log(2.0) * n_bytes),
            "val_tokens": n_targets, "val_bytes": n_bytes}
