"""Write, verify and recognise a prepared data folder (shards + tokenizer + meta.json).

A prepared folder is built in a hidden staging folder next to the target and renamed into place
only once everything in it (shards, tokenizer, meta.json) has been written and verified, so an
interrupted or failed run never leaves a half-written folder under the requested name.

meta.json records the request that produced the folder (`request`: corpus and the options that
change the data). A later run with the same request verifies the folder and does nothing; a run
with a different request, or a folder that holds anything else, is refused rather than
overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from meadow_golf.data.challenge_format import (
    BOS_ID,
    SHARD_NAME,
    ShardError,
    atomic_write_bytes,
    byte_tables_from_sentencepiece,
    list_shards,
    read_shard,
    read_shard_header,
    shard_name,
    write_shard,
)

META_NAME = "meta.json"
# Shards stay well under the format's int32 header limit and are easy to move around.
MAX_SHARD_TOKENS = 100_000_000
# Tokens per block when counting bytes or scanning ids, to bound memory on large shards.
SCAN_BLOCK_TOKENS = 16_000_000

# Keys every meta.json has; corpus modules add their own on top.
REQUIRED_META_KEYS = (
    "corpus",
    "request",
    "tokenizer",
    "tokenizer_sha256",
    "vocab_size",
    "train_tokens",
    "val_tokens",
    "val_bytes",
    "shards",
    "source",
    "splits",
)


class PrepareError(Exception):
    """A problem the user can act on; the entry point prints it as one line and exits non-zero."""


# ----------------------------------------------------------------------------- writing


def write_split(folder: Path, split: str, tokens: np.ndarray, max_tokens: int = MAX_SHARD_TOKENS) -> list[str]:
    """Write one split's token stream as shards of at most max_tokens; return the file names."""
    names = []
    for index, start in enumerate(range(0, max(len(tokens), 1), max_tokens)):
        name = shard_name(split, index)
        write_shard(folder / name, tokens[start : start + max_tokens])
        names.append(name)
    return names


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stream_byte_count(tables, shard_paths: list[Path]) -> int:
    """METHOD.md §2 bytes of tokens 1..n of the stream formed by the shards in order, in blocks."""
    total = 0
    previous = None  # the last token of the previous block: the predecessor of the next block's first
    for path in shard_paths:
        tokens = read_shard(path)
        for start in range(0, tokens.size, SCAN_BLOCK_TOKENS):
            block = np.asarray(tokens[start : start + SCAN_BLOCK_TOKENS], dtype=np.int64)
            if previous is not None:
                block = np.concatenate(([previous], block))
            if block.size > 1:
                total += int(tables.stream_bytes(block).sum())
            previous = int(block[-1])
    return total


def shard_max_id(path: Path) -> int:
    tokens = read_shard(path)
    best = -1
    for start in range(0, tokens.size, SCAN_BLOCK_TOKENS):
        best = max(best, int(tokens[start : start + SCAN_BLOCK_TOKENS].max()))
    return best


def count_documents(shard_paths: list[Path]) -> int:
    """Number of BOS tokens, i.e. documents, in the shards."""
    count = 0
    for path in shard_paths:
        tokens = read_shard(path)
        for start in range(0, tokens.size, SCAN_BLOCK_TOKENS):
            count += int(np.count_nonzero(tokens[start : start + SCAN_BLOCK_TOKENS] == BOS_ID))
    return count


def complete_meta(folder: Path, request: dict, meta: dict) -> dict:
    """Add the fields every prepared folder has, measured from what is in `folder` now.

    The corpus module has written the shards and the tokenizer and named the tokenizer file in
    meta["tokenizer"]; this counts the tokens, checks every id against the tokenizer's
    vocabulary and computes the METHOD.md §2 byte count of the validation stream.
    """
    import sentencepiece as spm

    tokenizer_path = folder / meta["tokenizer"]
    try:
        sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    except (OSError, RuntimeError) as e:
        raise PrepareError(f"{meta['tokenizer']}: not a readable SentencePiece model ({e})") from None
    vocab_size = sp.get_piece_size()
    tables = byte_tables_from_sentencepiece(sp)
    shards = {}
    for split in ("train", "val"):
        for path in list_shards(folder, split):
            shards[path.name] = read_shard_header(path)
            top = shard_max_id(path) if shards[path.name] else -1
            if top >= vocab_size:
                raise PrepareError(f"{path.name}: token id {top} is outside the tokenizer's vocabulary of {vocab_size}")
    val_paths = list_shards(folder, "val")
    full = dict(meta)
    full.update(
        corpus=request["corpus"],
        request=request,
        tokenizer_sha256=file_sha256(tokenizer_path),
        vocab_size=vocab_size,
        bos_id=BOS_ID,
        train_tokens=sum(n for name, n in shards.items() if "_train_" in name),
        val_tokens=sum(n for name, n in shards.items() if "_val_" in name),
        val_bytes=stream_byte_count(tables, val_paths),
        shards=shards,
    )
    for split in ("train", "val"):  # corpus modules that know their document counts set them
        if f"{split}_documents" not in full:
            full[f"{split}_documents"] = count_documents(list_shards(folder, split))
    # A fixed key order keeps meta.json easy to read: the contract fields first.
    ordered = {k: full[k] for k in REQUIRED_META_KEYS}
    ordered.update({k: v for k, v in full.items() if k not in ordered})
    return ordered


def write_meta(folder: Path, meta: dict) -> None:
    atomic_write_bytes(folder / META_NAME, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))


def build_folder(out: Path, request: dict, fill: Callable[[Path], dict]) -> dict:
    """Create `out`: fill a staging folder, complete and verify its meta.json, rename it into place.

    `fill(staging)` writes the shards and the tokenizer and returns the corpus-specific meta
    (at least `tokenizer`, `source`, `splits`). On any failure the staging folder is removed and
    `out` is left as it was.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the published folder is an ordinary one
        meta = complete_meta(staging, request, fill(staging))
        write_meta(staging, meta)
        problem = folder_problem(staging, meta)
        if problem:
            raise PrepareError(f"internal check of the new folder failed: {problem}")
        # rename(2) replaces a missing target or an empty folder, and nothing else.
        try:
            os.replace(staging, out)
        except OSError as e:
            raise PrepareError(f"{out}: cannot move the prepared data into place ({e.strerror or e})") from None
        return meta
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- recognising


def read_meta(folder: Path) -> dict:
    path = folder / META_NAME
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrepareError(f"{path}: unreadable meta.json ({e})") from None
    if not isinstance(meta, dict):
        raise PrepareError(f"{path}: meta.json is not a JSON object")
    return meta


def folder_problem(folder: Path, meta: dict) -> str | None:
    """What is wrong with a prepared folder relative to its meta.json, or None if nothing.

    Cheap: checks file presence, shard headers and sizes, and the tokenizer's hash; it does not
    reread every token.
    """
    missing = [k for k in REQUIRED_META_KEYS if k not in meta]
    if missing:
        return f"meta.json lacks {', '.join(missing)}"
    tokenizer = folder / str(meta["tokenizer"])
    if not tokenizer.is_file():
        return f"tokenizer {meta['tokenizer']} is missing"
    if file_sha256(tokenizer) != meta["tokenizer_sha256"]:
        return f"tokenizer {meta['tokenizer']} differs from the one recorded in meta.json"
    expected = dict(meta["shards"])
    present = sorted(p.name for p in folder.iterdir() if SHARD_NAME.match(p.name))
    extra = [name for name in present if name not in expected]
    if extra:
        return f"unexpected shard {extra[0]}"
    for name, count in expected.items():
        try:
            actual = read_shard_header(folder / name)
        except ShardError as e:
            return str(e)
        if actual != count:
            return f"{name} holds {actual} tokens, meta.json says {count}"
    for split in ("train", "val"):
        names = [n for n in expected if f"_{split}_" in n]
        if not names:
            return f"no {split} shards"
        if sum(expected[n] for n in names) != meta[f"{split}_tokens"]:
            return f"{split}_tokens in meta.json does not match its shards"
    return None


def describe_request(request: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in request.items())


def already_prepared(out: Path, request: dict) -> dict | None:
    """The meta of `out` if it already holds exactly this request's data; None if `out` is free.

    Raises PrepareError (never overwrites) when `out` holds anything else: a file, a foreign
    folder, data prepared with other options, or a damaged prepared folder.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise PrepareError(f"{out}: exists and is not a folder; choose a different --out")
    if not any(out.iterdir()):
        return None
    if not (out / META_NAME).is_file():
        raise PrepareError(
            f"{out}: folder is not empty and has no {META_NAME}, so it is not a prepared data folder; "
            "choose a different --out"
        )
    meta = read_meta(out)
    if meta.get("request") != request:
        held = describe_request(meta["request"]) if isinstance(meta.get("request"), dict) else "unknown data"
        raise PrepareError(
            f"{out}: already holds data prepared with {held}, not {describe_request(request)}; "
            "nothing was changed, choose a different --out"
        )
    problem = folder_problem(out, meta)
    if problem:
        raise PrepareError(
            f"{out}: prepared folder is incomplete or damaged ({problem}); remove it or choose a different --out"
        )
    return meta
