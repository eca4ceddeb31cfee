"""The parameter-golf data format and metric, written once for every experiment.

Shards (METHOD.md §1): a header of 256 little-endian int32 (magic 20240520, version 1,
num_tokens, zeros) followed by num_tokens little-endian uint16 token ids. The file size
must be exactly 1024 + 2 * num_tokens.

Bits per byte (METHOD.md §2): per-token byte counts from lookup tables over the tokenizer's
pieces; a leading "▁" adds one byte unless the previous token is a boundary token.
No per-token clamping.

This module depends on numpy only (sentencepiece is imported lazily where a model file is
read), so every backend and every script can use it.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
BOS_ID = 1
TOKEN_DTYPE = np.dtype("<u2")
SHARD_NAME = re.compile(r"^fineweb_(train|val)_(\d{6})\.bin$")


class ShardError(ValueError):
    """A shard file (or a folder of shards) is missing, corrupt or inconsistent."""


# ----------------------------------------------------------------------------- writing


def os_error_line(e: OSError) -> str:
    """The one `error:` line a CLI prints for an OSError (disk full, permissions, ...): the file,
    when the OS names one, and the reason."""
    where = f"{e.filename}: " if getattr(e, "filename", None) else ""
    return f"error: {where}{e.strerror or e}"


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write payload to path through a temporary file in the same folder + fsync + rename.

    A crash mid-write leaves the previous file (or nothing) behind, never a partial file. A
    failure (disk full, permissions) removes the temporary file and raises OSError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            # mkstemp creates 0600 files; give the result ordinary permissions (or keep the old file's).
            os.fchmod(f.fileno(), path.stat().st_mode & 0o777 if path.exists() else 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _naming(e, path) from None
        raise
    _fsync_folder(path.parent)


def _naming(e: OSError, path: Path) -> OSError:
    """The same error (same errno, so the same OSError subclass) naming the file the caller asked
    for, not the hidden temporary file or no file at all."""
    if e.errno is None:
        return e
    return OSError(e.errno, e.strerror or str(e), str(path))


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable. Best effort: the new file is already complete and in
    place, and some systems (Windows, a few network file systems) cannot fsync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def shard_bytes(tokens: np.ndarray) -> bytes:
    """Serialize token ids (any integer array with values in [0, 65535]) as one shard."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() > 0xFFFF):
        raise ValueError("token ids must fit in uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, tokens.size
    return header.tobytes() + tokens.astype(TOKEN_DTYPE).tobytes()


def write_shard(path: str | os.PathLike, tokens: np.ndarray) -> None:
    atomic_write_bytes(path, shard_bytes(tokens))


def shard_name(split: str, index: int) -> str:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return f"fineweb_{split}_{index:06d}.bin"


# ----------------------------------------------------------------------------- reading


def read_shard_header(path: str | os.PathLike) -> int:
    """Validate magic, version and file size; return the number of tokens."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as e:
        raise ShardError(f"{path}: cannot read shard ({e.strerror or e})") from None
    if len(raw) < HEADER_BYTES:
        raise ShardError(f"{path}: truncated header ({len(raw)} of {HEADER_BYTES} bytes)")
    header = np.frombuffer(raw, dtype="<i4")
    if header[0] != MAGIC:
        raise ShardError(f"{path}: bad magic {int(header[0])} (expected {MAGIC})")
    if header[1] != VERSION:
        raise ShardError(f"{path}: unsupported version {int(header[1])} (expected {VERSION})")
    num_tokens = int(header[2])
    if num_tokens < 0:
        raise ShardError(f"{path}: negative token count {num_tokens}")
    expected = HEADER_BYTES + 2 * num_tokens
    if size != expected:
        raise ShardError(
            f"{path}: file size {size} does not match header ({num_tokens} tokens -> {expected} bytes)"
        )
    return num_tokens


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """Return the shard's tokens as a read-only uint16 array (memory-mapped)."""
    n = read_shard_header(path)
    if n == 0:
        return np.zeros(0, dtype=np.uint16)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(n,))


def list_shards(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """Sorted shard paths of one split; a clear error if the folder or the shards are missing."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ShardError(f"{data_dir}: data folder does not exist")
    try:
        paths = sorted(p for p in data_dir.iterdir() if (m := SHARD_NAME.match(p.name)) and m[1] == split)
    except OSError as e:
        raise ShardError(f"{data_dir}: cannot list the data folder ({e.strerror or e})") from None
    if not paths:
        raise ShardError(f"{data_dir}: no shards matching fineweb_{split}_*.bin")
    return paths


def load_tokens(data_dir: str | os.PathLike, split: str, limit: int | None = None) -> np.ndarray:
    """Concatenate a split's shards (in sorted order) into one int64 array, optionally truncated."""
    parts, total = [], 0
    for path in list_shards(data_dir, split):
        arr = read_shard(path)
        if limit is not None:
            arr = arr[: max(0, limit - total)]
        parts.append(np.asarray(arr, dtype=np.int64))
        total += arr.size
        if limit is not None and total >= limit:
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class TokenStream:
    """The training stream of METHOD.md §1: shards in sorted order, read contiguously, wrapping.

    `take(n)` returns the next n tokens and advances. `state()` / `load_state()` capture the
    read position so that training can resume exactly where it stopped.
    """

    def __init__(self, data_dir: str | os.PathLike, split: str = "train"):
        self.paths = list_shards(data_dir, split)
        self.sizes = [read_shard_header(p) for p in self.paths]
        if sum(self.sizes) == 0:
            raise ShardError(f"{data_dir}: the {split} shards hold no tokens")
        self.shard = 0
        self.pos = 0
        self._tokens = read_shard(self.paths[0])

    def state(self) -> dict:
        return {"shard": self.shard, "pos": self.pos}

    def load_state(self, state: dict) -> None:
        shard, pos = int(state["shard"]), int(state["pos"])
        if not (0 <= shard < len(self.paths)) or not (0 <= pos <= self.sizes[shard]):
            raise ShardError(f"stream position {state} is outside the shards")
        self.shard, self.pos = shard, pos
        self._tokens = read_shard(self.paths[shard])

    def _advance_shard(self) -> None:
        self.shard = (self.shard + 1) % len(self.paths)
        self.pos = 0
        self._tokens = read_shard(self.paths[self.shard])

    def take(self, n: int) -> np.ndarray:
        out, filled = np.empty(n, dtype=np.int64), 0
        while filled < n:
            if self.pos >= self.sizes[self.shard]:
                self._advance_shard()
                continue
            k = min(n - filled, self.sizes[self.shard] - self.pos)
            out[filled : filled + k] = self._tokens[self.pos : self.pos + k]
            filled += k
            self.pos += k
        return out

    def next_batch(self, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1):
        """Take one global chunk of world_size*B*T+1 tokens; return this rank's (x, y), each (B, T).

        Every rank reads the same global chunk and keeps its own slice of B*T+1 tokens (neighbouring
        slices share one boundary token), so the ranks stay in step and their rows together are
        exactly the rows of a single-process batch of the same global size.
        """
        local = batch_size * seq_len
        chunk = self.take(world_size * local + 1)
        piece = chunk[rank * local : (rank + 1) * local + 1]
        return piece[:-1].reshape(batch_size, seq_len), piece[1:].reshape(batch_size, seq_len)


# ----------------------------------------------------------------------------- bits per byte


@dataclass(frozen=True)
class ByteTables:
    """Per-id lookup tables of METHOD.md §2."""

    base_bytes: np.ndarray  # int64 (V,)
    has_leading_space: np.ndarray  # bool (V,)
    is_boundary: np.ndarray  # bool (V,)

    @property
    def vocab_size(self) -> int:
        return int(self.base_bytes.size)

    def token_bytes(self, prev: np.ndarray, tgt: np.ndarray) -> np.ndarray:
        """Bytes of each target token given its predecessor (same shapes, int64)."""
        prev, tgt = np.asarray(prev), np.asarray(tgt)
        self.check_ids(prev)
        self.check_ids(tgt)
        extra = self.has_leading_space[tgt] & ~self.is_boundary[prev]
        return self.base_bytes[tgt] + extra.astype(np.int64)

    def stream_bytes(self, tokens: np.ndarray) -> np.ndarray:
        """Bytes of tokens[1:] of a contiguous stream given their predecessors."""
        tokens = np.asarray(tokens)
        return self.token_bytes(tokens[..., :-1], tokens[..., 1:])

    def check_ids(self, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(
                f"token id {int(ids.max()) if ids.max() >= self.vocab_size else int(ids.min())} "
                f"is outside the tokenizer's vocabulary of {self.vocab_size}"
            )


def byte_tables_from_sentencepiece(sp) -> ByteTables:
    """Build the tables from a loaded sentencepiece.SentencePieceProcessor."""
    v = sp.get_piece_size()
    base = np.zeros(v, dtype=np.int64)
    lead = np.zeros(v, dtype=bool)
    boundary = np.zeros(v, dtype=bool)
    for i in range(v):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            boundary[i] = True
            continue
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            lead[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteTables(base, lead, boundary)


def load_byte_tables(tokenizer_path: str | os.PathLike) -> ByteTables:
    import sentencepiece as spm

    path = Path(tokenizer_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer model not found")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(path))
    except Exception as e:  # sentencepiece raises OSError / RuntimeError for a bad file
        raise ValueError(f"{path}: not a SentencePiece model ({e})") from None
    return byte_tables_from_sentencepiece(sp)


def bits_per_byte(nll_nats_sum: float, byte_count: int | float) -> float:
    """val_bpb = sum NLL / (ln 2 * sum bytes), with float64 sums."""
    if byte_count <= 0:
        raise ValueError("byte count must be positive")
    return float(np.float64(nll_nats_sum) / (math.log(2.0) * np.float64(byte_count)))
