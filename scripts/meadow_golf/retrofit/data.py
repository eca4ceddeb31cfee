"""Training token streams of the retrofit: rows of T + 1 consecutive tokens, read in a fixed order.

--train_data takes:
  packages:NAME[,NAME...]  the .py sources of installed third-party packages (sorted paths),
                           offline and reproducible; the standard library is refused (it is the
                           held-out set of the bits-per-byte evaluation, evaluate.py)
  a prepared folder        (scripts/prepare_data.py: fineweb_train_*.bin shards) for our GPT
  a folder of text files   every *.py, *.txt, *.md below it, sorted by path
Text is tokenized file by file (a document ends with the tokenizer's eos token, when it has one)
and cut into consecutive non-overlapping rows; --train_offset skips that many tokens first (the
GPT record starts after the tokens its base was trained on); at the end of the data the next
epoch starts from the first document. A step reads the GLOBAL batch of
rows and each rank keeps its own, so the data do not depend on the rank count; resuming skips
the rows already read.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

TEXT_SUFFIXES = (".py", ".txt", ".md")


class DataError(ValueError):
    pass


def package_files(spec: str) -> list[Path]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise DataError("--train_data packages: names no package")
    files: list[Path] = []
    for name in names:
        if name in sys.stdlib_module_names:
            raise DataError(f"--train_data packages:{name}: a standard-library module (the held-out evaluation set)")
        found = importlib.util.find_spec(name)
        if found is None or not found.submodule_search_locations:
            raise DataError(f"--train_data packages:{name}: not an installed package")
        for root in found.submodule_search_locations:
            files.extend(sorted(Path(root).rglob("*.py")))
    return files


def text_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    if not files:
        raise DataError(f"--train_data {folder}: no {', '.join(TEXT_SUFFIXES)} files below it")
    return files


def is_prepared_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("fineweb_train_*.bin"))


class TokenRows:
    """Consecutive rows of `width` tokens from a token source; rows_read counts rows handed out."""

    def __init__(self, width: int, offset: int = 0):
        self.width = width
        self.offset = offset
        self.rows_read = 0
        self._buffer = np.zeros(0, dtype=np.int64)
        self._skipped = 0
        self.epochs = 0

    def _more(self) -> np.ndarray | None:  # the next chunk of tokens, or None at the end
        raise NotImplementedError

    def _restart(self) -> None:  # back to the first document (the next epoch)
        raise NotImplementedError

    def _fill(self, n: int) -> None:
        while self._buffer.size < n:
            chunk = self._more()
            if chunk is None:
                if self.rows_read == 0 and self._buffer.size == 0:
                    raise DataError(f"the training data holds no row of {self.width} tokens")
                # Out of data: the next epoch starts from the first document (--train_offset is
                # skipped once, in the first epoch only).
                self.epochs += 1
                self._restart()
                chunk = self._more()
                if chunk is None:
                    raise DataError("the training data is empty")
            if self._skipped < self.offset:
                drop = min(self.offset - self._skipped, chunk.size)
                chunk, self._skipped = chunk[drop:], self._skipped + drop
            self._buffer = np.concatenate([self._buffer, chunk])

    def next_rows(self, n: int) -> np.ndarray:
        """(n, width) int64: the next n rows."""
        self._fill(n * self.width)
        out = self._buffer[: n * self.width].reshape(n, self.width)
        self._buffer = self._buffer[n * self.width:]
        self.rows_read += n
        return out

    def skip_rows(self, n: int) -> None:
        for _ in range(n):
            self.next_rows(1)


class TextRows(TokenRows):
    def __init__(self, files: list[Path], tokenizer, width: int, offset: int = 0):
        super().__init__(width, offset)
        self.files, self.tokenizer, self._next = files, tokenizer, 0

    def _restart(self) -> None:
        self._next = 0

    def _more(self):
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            text = path.read_text(encoding="utf-8", errors="replace")
            if not text.strip():
                continue
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if self.tokenizer.eos_token_id is not None:
                ids = ids + [self.tokenizer.eos_token_id]
            return np.asarray(ids, dtype=np.int64)
        return None


class ShardRows(TokenRows):
    def __init__(self, folder: Path, width: int, offset: int = 0):
        from meadow_golf.data.challenge_format import list_shards, read_shard

        super().__init__(width, offset)
        self.shards, self._read, self._next = list_shards(folder, "train"), read_shard, 0

    def _restart(self) -> None:
        self._next = 0

    def _more(self):
        if self._next >= len(self.shards):
            return None
        shard = self.shards[self._next]
        self._next += 1
        return np.asarray(self._read(shard), dtype=np.int64)


def check_data_spec(spec: str) -> None:
    """Refuse a --train_data that cannot be read, before any model is loaded."""
    if spec.startswith("packages:"):
        package_files(spec[len("packages:"):])
    elif not Path(spec).is_dir():
        raise DataError(f"--train_data {spec}: no such folder (or packages:NAME,...)")


def open_rows(spec: str, tokenizer, width: int, offset: int = 0) -> TokenRows:
    """The row stream of --train_data (see the module docstring); refused before any compute."""
    if spec.startswith("packages:"):
        if tokenizer is None:
            raise DataError("--train_data packages: needs a tokenizer (a transformers base)")
        return TextRows(package_files(spec[len("packages:"):]), tokenizer, width, offset)
    path = Path(spec)
    if not path.is_dir():
        raise DataError(f"--train_data {spec}: no such folder (or packages:NAME,...)")
    if is_prepared_folder(path):
        return ShardRows(path, width, offset)
    if tokenizer is None:
        raise DataError(f"--train_data {spec}: a text folder needs a tokenizer; a GPT base reads a prepared folder")
    return TextRows(text_files(path), tokenizer, width, offset)
