"""fineweb-* preparation from a Hugging Face hub cache built by the test (HF_HUB_OFFLINE=1).

No network: the cache follows the hub's layout (`datasets--<owner>--<name>/refs/main` holding a
commit hash, files under `snapshots/<commit>/<path in repo>`, optionally as symlinks into
`blobs/`), filled with tiny shards and a tiny SentencePiece model.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from meadow_golf.data.challenge_format import load_tokens, read_shard, shard_bytes
from meadow_golf.data.tokenizer_train import encode_documents, split_documents

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "prepare_data.py"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SP1024_REPO = "willdepueoai/parameter-golf"
SP1024_DIR = "datasets/datasets/fineweb10B_sp1024"
SP1024_TOKENIZER = "datasets/tokenizers/fineweb_1024_bpe.model"
V4096_REPO = "akaiii/meadow-golf-v4096"


def fill_hub_cache(cache: Path, repo: str, files: dict[str, bytes], symlinks: bool = True) -> None:
    """Write files into the hub cache layout of one dataset repository at revision COMMIT."""
    root = cache / f"datasets--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    for path_in_repo, payload in files.items():
        target = root / "snapshots" / COMMIT / path_in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        if symlinks:  # as huggingface_hub stores them: content in blobs/, linked from the snapshot
            blob = root / "blobs" / hashlib.sha256(payload).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(payload)
            target.symlink_to(os.path.relpath(blob, target.parent))
        else:
            target.write_bytes(payload)


@pytest.fixture(scope="module")
def tiny_shards(tiny_sp_model) -> dict[str, bytes]:
    """Two train shards and two val shards of BOS-delimited documents (file name -> bytes)."""
    sp = spm.SentencePieceProcessor(model_file=str(tiny_sp_model))
    words = ("the", "cat", "sat", "on", "café", "mat", "dog", "ran", "42", "sun")

    def documents(offset: int, count: int) -> list[str]:
        return [" ".join(words[(offset + i * 3 + k) % len(words)] for k in range(5 + i % 7)) for i in range(count)]

    return {
        "fineweb_train_000000.bin": shard_bytes(encode_documents(sp, documents(0, 30))),
        "fineweb_train_000001.bin": shard_bytes(encode_documents(sp, documents(1, 20))),
        "fineweb_val_000000.bin": shard_bytes(encode_documents(sp, documents(2, 10))),
        "fineweb_val_000001.bin": shard_bytes(encode_documents(sp, documents(3, 5))),
    }


@pytest.fixture
def sp1024_cache(tmp_path, tiny_shards, tiny_sp_model) -> Path:
    cache = tmp_path / "hub"
    files = {f"{SP1024_DIR}/{name}": payload for name, payload in tiny_shards.items()}
    files[SP1024_TOKENIZER] = tiny_sp_model.read_bytes()
    files["datasets/manifest.json"] = b"{}"
    fill_hub_cache(cache, SP1024_REPO, files)
    return cache


def run_offline(tmp_path: Path, *argv: str, hub_cache: Path | None = None) -> subprocess.CompletedProcess:
    """Run the entry point as a script with HF_HUB_OFFLINE=1 and a private HF_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    if hub_cache is not None:
        env["HF_HUB_CACHE"] = str(hub_cache)
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, env=env)


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_sp1024_from_a_filled_cache(tmp_path, sp1024_cache, tiny_shards, tiny_sp_model):
    out = tmp_path / "sp1024"
    result = run_offline(tmp_path, "fineweb-sp1024", "--out", str(out), "--cache-dir", str(sp1024_cache))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "meta.json",
            "fineweb_1024_bpe.model",
            "fineweb_train_000000.bin",
            "fineweb_val_000000.bin",
            "fineweb_val_000001.bin",
        ]
    )  # one train shard by default, every val shard
    for name in names:
        if name in tiny_shards:
            assert (out / name).read_bytes() == tiny_shards[name]
    assert (out / "fineweb_1024_bpe.model").read_bytes() == tiny_sp_model.read_bytes()

    meta = json.loads((out / "meta.json").read_text())
    assert meta["corpus"] == "fineweb-sp1024" and meta["tokenizer"] == "fineweb_1024_bpe.model"
    assert meta["vocab_size"] == 320  # measured from the tokenizer file, not assumed
    assert meta["train_tokens"] == read_shard(out / "fineweb_train_000000.bin").size
    val = load_tokens(out, "val")
    assert meta["val_tokens"] == val.size and meta["val_documents"] == 15
    sp = spm.SentencePieceProcessor(model_file=str(tiny_sp_model))
    recount = sum(len(sp.decode(doc.tolist()).encode("utf-8")) for doc in split_documents(val))
    assert meta["val_bytes"] == recount
    assert meta["source"]["hub_repo"] == SP1024_REPO and meta["source"]["revision"] == COMMIT
    assert meta["source"]["files"]["fineweb_val_000001.bin"] == f"{SP1024_DIR}/fineweb_val_000001.bin"
    assert "fineweb_val_000001.bin" in meta["splits"]["val"]

    again = run_offline(tmp_path, "fineweb-sp1024", "--out", str(out), "--cache-dir", str(sp1024_cache))
    assert again.returncode == 0 and again.stdout.startswith("nothing to do:")


def test_hf_hub_cache_variable_and_more_train_shards(tmp_path, sp1024_cache):
    out = tmp_path / "two"
    result = run_offline(tmp_path, "fineweb-sp1024", "--out", str(out), "--train-shards", "2", hub_cache=sp1024_cache)
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(n for n in meta["shards"] if "_train_" in n) == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
    ]

    too_many = run_offline(tmp_path, "fineweb-sp1024", "--out", str(tmp_path / "three"), "--train-shards", "3",
                           hub_cache=sp1024_cache)  # fmt: skip
    assert_one_error_line(too_many, "2 train shard(s) available", "--train-shards")
    assert not (tmp_path / "three").exists()


def test_v4096_layout_with_a_data_folder(tmp_path, tiny_shards, tiny_sp_model):
    cache = tmp_path / "hub"
    files = {f"data/{name}": payload for name, payload in tiny_shards.items()}
    files["bpe_v4096.model"] = tiny_sp_model.read_bytes()
    fill_hub_cache(cache, V4096_REPO, files, symlinks=False)
    out = tmp_path / "v4096"
    result = run_offline(tmp_path, "fineweb-v4096", "--out", str(out), "--cache-dir", str(cache))
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tokenizer"] == "bpe_v4096.model" and meta["source"]["hub_repo"] == V4096_REPO
    assert meta["val_tokens"] == sum(
        read_shard(out / n).size for n in ("fineweb_val_000000.bin", "fineweb_val_000001.bin")
    )


def test_offline_with_an_empty_cache_is_one_clear_line(tmp_path):
    empty = tmp_path / "empty_cache"
    empty.mkdir()
    out = tmp_path / "nothing"
    result = run_offline(tmp_path, "fineweb-sp1024", "--out", str(out), "--cache-dir", str(empty))
    assert_one_error_line(result, f"cannot reach the Hugging Face hub for {SP1024_REPO}", "HF_HUB_OFFLINE=1")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_corrupt_cached_shard_is_named(tmp_path, tiny_shards, tiny_sp_model):
    cache = tmp_path / "hub"
    broken = dict(tiny_shards)
    broken["fineweb_val_000001.bin"] = broken["fineweb_val_000001.bin"][:-2]
    files = {f"{SP1024_DIR}/{name}": payload for name, payload in broken.items()}
    files[SP1024_TOKENIZER] = tiny_sp_model.read_bytes()
    fill_hub_cache(cache, SP1024_REPO, files)
    out = tmp_path / "broken"
    result = run_offline(tmp_path, "fineweb-sp1024", "--out", str(out), "--cache-dir", str(cache))
    assert_one_error_line(result, "fineweb_val_000001.bin", "does not match header")
    assert not out.exists()


def test_token_ids_beyond_the_tokenizer_are_refused(tmp_path, tiny_shards, tiny_sp_model):
    cache = tmp_path / "hub"
    files = {f"{SP1024_DIR}/{name}": payload for name, payload in tiny_shards.items()}
    files[f"{SP1024_DIR}/fineweb_val_000000.bin"] = shard_bytes(np.array([1, 5, 1000]))  # 1000 >= 320
    files[SP1024_TOKENIZER] = tiny_sp_model.read_bytes()
    fill_hub_cache(cache, SP1024_REPO, files)
    result = run_offline(tmp_path, "fineweb-sp1024", "--out", str(tmp_path / "ids"), "--cache-dir", str(cache))
    assert_one_error_line(result, "fineweb_val_000000.bin", "outside the tokenizer's vocabulary")
