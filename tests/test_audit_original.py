"""The audit of the original's hub checkpoints: scripts/fetch_original.py on a pre-filled Hugging
Face cache (HF_HUB_OFFLINE=1, no network), audit_table.py on hand-made JSON, and
audit_original.sh end to end in a smoke form once eval_cf.py has the flags it needs.

The cache holds tiny stand-ins: the original-recipe fixture weights renamed to the ORIGINAL
parameter names (attn.c_q/c_k/c_v, mlp.fc/proj), the session's tiny tokenizer under the name
bpe_v4096.model and a small validation shard. The checkpoints sit in a folder the fetcher does
not know in advance, because the real repository's layout is only inferred.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from meadow_golf.original import audit_table
from meadow_golf.data.challenge_format import read_shard_header, shard_bytes
from test_fineweb_offline import COMMIT, assert_one_error_line, fill_hub_cache
from meadow_golf.data.tokenizer_train import encode_documents

REPO = Path(__file__).resolve().parents[1]
EXP = REPO / "experiments" / "2026-04-09_matched_ablation"
FETCH = REPO / "scripts" / "fetch_original.py"
FIXTURE = REPO / "tests" / "fixtures" / "original_recipe"
CKPT_REPO = "akaiii/meadow-golf-checkpoints"
DATA_REPO = "akaiii/meadow-golf-v4096"
ABLATION = ("5L_w0", "5L_w03", "5L_w1", "11L_w0", "11L_w03", "11L_w1")
# A folder name the fetcher cannot guess: it has to search by file name.
HIDDEN = "ablation_results/final_npz"
ORIGINAL_NAMES = {".attn.q.": ".attn.c_q.", ".attn.k.": ".attn.c_k.", ".attn.v.": ".attn.c_v.",
                  ".mlp.up.": ".mlp.fc.", ".mlp.down.": ".mlp.proj."}


def original_npz(fixture_file: str) -> bytes:
    """A fixture weight file with the project's names turned back into the original's."""
    with np.load(FIXTURE / fixture_file) as z:
        weights = {}
        for key in z.files:
            name = key
            for project, original in ORIGINAL_NAMES.items():
                name = name.replace(project, original)
            weights[name] = z[key]
    buf = io.BytesIO()
    np.savez(buf, **weights)
    return buf.getvalue()


@pytest.fixture(scope="module")
def stand_ins() -> dict[str, bytes]:
    """tag -> .npz bytes (5L_w0 holds EMA weights, as on the hub). Several tags share a fixture
    file: the evaluator refuses any tensor the original architecture does not have, so the
    files cannot be told apart by an extra marker."""
    sources = {"5L_w0": "final_ema_w0.0.npz", "5L_w03": "final_w0.3.npz", "5L_w1": "final_ema_w0.3.npz",
               "11L_w0": "final_w0.0.npz", "11L_w03": "final_w0.3.npz", "11L_w1": "final_ema_w0.3.npz",
               "11L_w03_s1337": "final_w0.3.npz"}
    return {tag: original_npz(src) for tag, src in sources.items()}


@pytest.fixture(scope="module")
def val_shard(tiny_sp_model) -> bytes:
    sp = spm.SentencePieceProcessor(model_file=str(tiny_sp_model))
    words = ("the", "cat", "sat", "on", "café", "mat", "dog", "ran", "42", "sun")
    docs = [" ".join(words[(i * 3 + k * k) % len(words)] for k in range(6 + i % 9)) for i in range(40)]
    return shard_bytes(encode_documents(sp, docs))


def checkpoint_files(stand_ins: dict[str, bytes], drop: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {f"{HIDDEN}/{tag}.npz": payload for tag, payload in stand_ins.items() if tag not in drop}


def data_files(tiny_sp_model: Path, val_shard: bytes) -> dict[str, bytes]:
    return {"bpe_v4096.model": tiny_sp_model.read_bytes(), "data/fineweb_val_000000.bin": val_shard,
            "data/fineweb_train_000000.bin": shard_bytes(np.array([1, 5, 6, 7])), "README.md": b"v4096"}


@pytest.fixture
def hub(tmp_path, stand_ins, tiny_sp_model, val_shard) -> Path:
    cache = tmp_path / "hub"
    fill_hub_cache(cache, CKPT_REPO, {**checkpoint_files(stand_ins), "README.md": b"checkpoints"})
    fill_hub_cache(cache, DATA_REPO, data_files(tiny_sp_model, val_shard))
    return cache


def fetch(tmp_path: Path, *argv: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    """fetch_original.py as a script, offline, with a private HF_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    if cache is not None:
        env["HF_HUB_CACHE"] = str(cache)
    return subprocess.run([sys.executable, str(FETCH), *argv], capture_output=True, text=True, env=env)


def no_partials(folder: Path) -> bool:
    return not any(p.name.endswith(".partial") for p in folder.rglob("*"))


# ----------------------------------------------------------------------------- fetch_original.py


def test_fetch_offline_lays_out_the_folder(tmp_path, hub, stand_ins, tiny_sp_model, val_shard):
    out = tmp_path / "original"
    result = fetch(tmp_path, "--out", str(out), cache=hub)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "data", "manifest.json"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(f"{t}.npz" for t in stand_ins)
    for tag, payload in stand_ins.items():
        assert (out / "checkpoints" / f"{tag}.npz").read_bytes() == payload
    # Only what the evaluators read: the tokenizer and the first validation shard (no meta.json).
    assert sorted(p.name for p in (out / "data").iterdir()) == ["bpe_v4096.model", "fineweb_val_000000.bin"]
    assert (out / "data" / "bpe_v4096.model").read_bytes() == tiny_sp_model.read_bytes()
    assert (out / "data" / "fineweb_val_000000.bin").read_bytes() == val_shard

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tool"] == "fetch_original" and "inferred" in manifest["layout"]
    ckpts, data = manifest["parts"]["checkpoints"], manifest["parts"]["data"]
    assert ckpts["hub_repo"] == CKPT_REPO and ckpts["revision"] == COMMIT and ckpts["fetched_offline"] is True
    for tag, payload in stand_ins.items():
        entry = ckpts["files"][f"{tag}.npz"]
        assert entry["path_in_repo"] == f"{HIDDEN}/{tag}.npz"
        assert entry["bytes"] == len(payload) and entry["sha256"] == hashlib.sha256(payload).hexdigest()
        assert entry["parameter_names"] == "original" and entry["num_layers"] == 2 and entry["model_dim"] == 64
        assert entry["run"]["tag"] == tag
    assert ckpts["files"]["5L_w0.npz"]["run"] == {"tag": "5L_w0", "arch": "5L", "cdm_weight": 0.0,
                                                  "train_seed": 1337, "group": "ablation6"}
    # The seed runs: one was in the repository, the other five are recorded as absent.
    assert ckpts["files"]["11L_w03_s1337.npz"]["run"]["group"] == "seeds"
    assert sorted(ckpts["not_in_repository"]) == sorted(
        ["11L_w03_s42.npz", "11L_w03_s2024.npz", "11L_w03_s7.npz", "11L_w03_s100.npz", "11L_w0_s1337.npz"])
    assert data["hub_repo"] == DATA_REPO
    assert data["files"]["bpe_v4096.model"]["vocab_size"] == 320
    assert data["files"]["bpe_v4096.model"]["path_in_repo"] == "bpe_v4096.model"
    shard = data["files"]["fineweb_val_000000.bin"]
    assert shard["path_in_repo"] == "data/fineweb_val_000000.bin"
    assert shard["tokens"] == read_shard_header(out / "data" / "fineweb_val_000000.bin")
    assert shard["sha256"] == hashlib.sha256(val_shard).hexdigest()
    assert "fetched checkpoints: 7 file(s)" in result.stdout and "not in akaiii/meadow-golf-checkpoints" in result.stdout

    again = fetch(tmp_path, "--out", str(out), cache=hub)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("nothing to do:") == 2
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_missing_checkpoint_is_one_line_naming_it(tmp_path, stand_ins, tiny_sp_model, val_shard):
    cache = tmp_path / "hub"
    fill_hub_cache(cache, CKPT_REPO, checkpoint_files(stand_ins, drop=("11L_w1",)))
    fill_hub_cache(cache, DATA_REPO, data_files(tiny_sp_model, val_shard))
    out = tmp_path / "original"
    result = fetch(tmp_path, "--out", str(out), cache=cache)
    # Names the missing file, says what was expected and lists what the repository holds.
    assert_one_error_line(result, CKPT_REPO, "no file named 11L_w1.npz", "expected: 5L_w0.npz", "inferred",
                          f"{HIDDEN}/5L_w0.npz", f"{HIDDEN}/11L_w03.npz")
    # Located before anything is downloaded: not even the data part was written.
    assert not out.exists()


def test_missing_data_file_and_shards_are_listed_compactly(tmp_path, stand_ins, tiny_sp_model):
    cache = tmp_path / "hub"
    fill_hub_cache(cache, DATA_REPO, {
        "bpe_v4096.model": tiny_sp_model.read_bytes(),
        **{f"data/fineweb_train_{i:06d}.bin": shard_bytes(np.array([1, 2])) for i in range(12)},
    })
    out = tmp_path / "original"
    result = fetch(tmp_path, "--out", str(out), "--what", "data", cache=cache)
    assert_one_error_line(result, "no file named fineweb_val_000000.bin",
                          "data/fineweb_train_000000.bin .. data/fineweb_train_000011.bin (12 files)")
    assert not out.exists()


def test_one_part_at_a_time_then_the_other(tmp_path, hub, stand_ins):
    out = tmp_path / "original"
    first = fetch(tmp_path, "--out", str(out), "--what", "data", cache=hub)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["data", "manifest.json"]
    assert list(json.loads((out / "manifest.json").read_text())["parts"]) == ["data"]
    second = fetch(tmp_path, "--out", str(out), "--what", "checkpoints", cache=hub)
    assert second.returncode == 0, second.stderr
    parts = json.loads((out / "manifest.json").read_text())["parts"]
    assert sorted(parts) == ["checkpoints", "data"] and len(parts["checkpoints"]["files"]) == len(stand_ins)
    assert no_partials(out)


def test_a_changed_file_is_refused_not_overwritten(tmp_path, hub):
    out = tmp_path / "original"
    assert fetch(tmp_path, "--out", str(out), cache=hub).returncode == 0
    target = out / "checkpoints" / "5L_w1.npz"
    target.unlink()  # the file is a hard link into the cache: replace it, do not write through it
    target.write_bytes(b"not the fetched file")
    result = fetch(tmp_path, "--out", str(out), cache=hub)
    assert_one_error_line(result, str(out / "checkpoints"), "5L_w1.npz differs from the file recorded in manifest.json")
    assert target.read_bytes() == b"not the fetched file"


@pytest.mark.parametrize("argv, fragments", [
    (("--what", "weights"), ("argument --what: invalid choice",)),
    ((), ("--out",)),
])
def test_bad_command_lines_are_one_line(tmp_path, hub, argv, fragments):
    out_args = () if argv == () else ("--out", str(tmp_path / "x"))
    result = fetch(tmp_path, *out_args, *argv, cache=hub)
    assert_one_error_line(result, *fragments)
    assert not (tmp_path / "x").exists()


def test_foreign_out_folders_are_refused(tmp_path, hub):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert_one_error_line(fetch(tmp_path, "--out", str(a_file), cache=hub), "exists and is not a folder")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert_one_error_line(fetch(tmp_path, "--out", str(busy), cache=hub), "not empty and has no manifest.json")
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_offline_with_an_empty_cache_is_one_clear_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "original"
    result = fetch(tmp_path, "--out", str(out), "--cache-dir", str(empty))
    assert_one_error_line(result, f"cannot reach the Hugging Face hub for {CKPT_REPO}", "HF_HUB_OFFLINE=1")
    assert not out.exists()


def test_a_corrupt_shard_is_named_and_nothing_is_written(tmp_path, stand_ins, tiny_sp_model, val_shard):
    cache = tmp_path / "hub"
    fill_hub_cache(cache, CKPT_REPO, checkpoint_files(stand_ins))
    fill_hub_cache(cache, DATA_REPO, {**data_files(tiny_sp_model, val_shard),
                                      "data/fineweb_val_000000.bin": val_shard[:-2]})
    out = tmp_path / "original"
    assert_one_error_line(fetch(tmp_path, "--out", str(out), cache=cache), "fineweb_val_000000.bin",
                          "does not match header")
    assert not out.exists()


def test_a_name_at_two_paths(tmp_path, stand_ins, tiny_sp_model, val_shard):
    cache = tmp_path / "hub"
    same = {**checkpoint_files(stand_ins), "mirror/5L_w03.npz": stand_ins["5L_w03"]}
    fill_hub_cache(cache, CKPT_REPO, same)
    fill_hub_cache(cache, DATA_REPO, data_files(tiny_sp_model, val_shard))
    out = tmp_path / "same"
    result = fetch(tmp_path, "--out", str(out), "--what", "checkpoints", cache=cache)
    assert result.returncode == 0, result.stderr
    entry = json.loads((out / "manifest.json").read_text())["parts"]["checkpoints"]["files"]["5L_w03.npz"]
    # The shallowest path is used, the other copy recorded.
    assert entry["path_in_repo"] == "mirror/5L_w03.npz" and entry["identical_copies_at"] == [f"{HIDDEN}/5L_w03.npz"]

    cache2 = tmp_path / "hub2"
    fill_hub_cache(cache2, CKPT_REPO, {**checkpoint_files(stand_ins), "mirror/5L_w03.npz": stand_ins["5L_w1"]})
    out2 = tmp_path / "different"
    result = fetch(tmp_path, "--out", str(out2), "--what", "checkpoints", cache=cache2)
    assert_one_error_line(result, "2 different files are named 5L_w03.npz", "mirror/5L_w03.npz")
    assert not out2.exists()


# ----------------------------------------------------------------------------- audit_table.py

SEED_TAGS = ("11L_w03_s1337", "11L_w03_s42")
WINDOWS = "ab" * 32


def hand_made_run(root: Path, shift: dict[str, float] | None = None, windows: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A manifest with the six ablation checkpoints and two seed runs, and their cell JSON: each
    reproduced number is the published one plus shift[tag] (CF) / half of it (Pure-AR)."""
    shift = shift or {}
    tags = (*ABLATION, *SEED_TAGS)
    files = {f"{t}.npz": {"path_in_repo": f"x/{t}.npz", "bytes": 10, "sha256": f"{i:02d}" * 32,
                          "run": {"tag": t}} for i, t in enumerate(tags)}
    manifest = {"tool": "fetch_original", "parts": {
        "checkpoints": {"hub_repo": CKPT_REPO, "revision": COMMIT, "layout": "hub layout inferred", "files": files,
                        "not_in_repository": {"11L_w03_s7.npz": "optional"}},
        "data": {"hub_repo": DATA_REPO, "revision": COMMIT,
                 "files": {"fineweb_val_000000.bin": {"sha256": "ef" * 32, "tokens": 45122403}}}}}
    (root / "fetched").mkdir(parents=True)
    (root / "fetched" / "manifest.json").write_text(json.dumps(manifest))
    cells = root / "cells"
    cells.mkdir()
    for i, t in enumerate(tags):
        p = audit_table.PUBLISHED[t]
        d = shift.get(t, 0.0)
        (cells / f"{t}.original.json").write_text(json.dumps({
            "protocol": "original", "checkpoint": f"/pod/original/checkpoints/{t}.npz",
            "pure_ar_bpb": p.pure_ar + d / 2, "cf_ar_part": 0.7, "cf_cdm_part": p.cf_total + d - 0.7,
            "cf_total": p.cf_total + d, "n_seqs": 500, "seq_len": 1024, "seed": 42,
            "pure_ar_bpb_unclamped_bytes": p.pure_ar + 0.01,
            # As eval_cf.py reports it: Pure-AR is a code length only where the clamp added no bytes.
            "valid_code_length": {"pure_ar_bpb": t == "5L_w03", "pure_ar_bpb_unclamped_bytes": True,
                                  "cf_ar_part": False, "cf_cdm_part": False, "cf_total": False}}))
        (cells / f"{t}.shared.json").write_text(json.dumps({
            "tool": "eval_cf", "checkpoint": f"/pod/original/checkpoints/{t}.npz",
            "protocol": {"mode": "random", "n_seqs": 500, "seq_len": 1024, "seed": 42},
            "windows": {"count": 500, "sha256": (windows or {}).get(t, WINDOWS)},
            "decoders": {name: {"bpb": 2.0 + i / 100 + k / 1000, "valid_code_length": True, "label": ""}
                         for k, name in enumerate(("ar", "cf_valid", "cf_bidir_skeleton"))}}))
    return root / "fetched" / "manifest.json", cells


def row_of(markdown: str, run: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"| {run} |"))


def test_audit_table_from_hand_made_json(tmp_path, capsys):
    manifest, cells = hand_made_run(tmp_path, shift={"11L_w03_s1337": 0.0016, "11L_w03_s42": 0.0030, "5L_w0": 0.5})
    assert audit_table.main(["--manifest", str(manifest), "--cells_dir", str(cells), "--out_dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    md = (tmp_path / "audit_table.md").read_text()
    assert printed == md
    header = next(line for line in md.splitlines() if line.startswith("| run |"))
    assert "published CF (NOT a valid code length)" in header
    assert "reproduced CF (original protocol; NOT a valid code length)" in header

    # The 6-run rows: which checkpoint each side scored, and no 0.002 verdict (different weights),
    # even where the numbers are far apart (5L w=0, shifted by 0.5).
    r = row_of(md, "5L w=0")
    assert "step_8000.pt (intermediate, step 8000)" in r and "5L_w0.npz from the hub (final state, step 8079, EMA weights)" in r
    assert "n/a (different checkpoints)" in r and "| 2.4371 |" in r and "| 2.9371 |" in r
    # Pure-AR, published and reproduced, carries what the clamp made of it on these windows.
    assert "| 1.4479 (NOT a valid code length: clamped bytes) |" in r
    assert "| 1.5231 | 1.4009 | 1.5231 | 1.4009 |" in row_of(md, "5L w=0.3")
    for run, step in (("5L w=0.3", 5000), ("5L w=1.0", 5000), ("11L w=0", 5000), ("11L w=0.3", 1500), ("11L w=1.0", 1500)):
        assert f"step_{step}.pt" in row_of(md, run) and "n/a (different checkpoints)" in row_of(md, run)
    # The seed runs: same weights, so checked: 0.0016 passes, 0.0030 does not.
    ok, bad = row_of(md, "11L w=0.3 seed 1337"), row_of(md, "11L w=0.3 seed 42")
    assert "step_final.pt (final state)" in ok and "the same weights as step_final.pt" in ok
    assert "yes (Pure-AR +0.0008, CF +0.0016)" in ok and "1.2924" in ok
    assert "NO (Pure-AR +0.0015, CF +0.0030)" in bad
    assert "2.0100 | 2.0110 | 2.0120 |" in row_of(md, "5L w=0.3")  # ar, cf_valid, cf_bidir_skeleton
    assert "11L_w03_s7.npz" in md
    assert f"data: `{DATA_REPO}` at `{COMMIT}`, fineweb_val_000000.bin with 45122403 tokens" in md

    table = json.loads((tmp_path / "audit_table.json").read_text())
    rows = {r["tag"]: r for r in table["rows"]}
    assert list(rows) == [*ABLATION, *SEED_TAGS]
    assert rows["5L_w0"]["comparison"]["within_tolerance"] is None and rows["5L_w0"]["same_checkpoint"] is False
    assert rows["11L_w03_s1337"]["comparison"]["within_tolerance"] is True
    assert rows["11L_w03_s42"]["comparison"]["within_tolerance"] is False
    assert rows["11L_w03_s42"]["comparison"]["delta_cf_total"] == pytest.approx(0.0030)
    assert rows["11L_w1"]["published"] == {"pure_ar_bpb": pytest.approx(1.5414, abs=5e-5),
                                          "cf_total": pytest.approx(1.3527, abs=5e-5), "pure_ar_valid": False}
    assert rows["5L_w0"]["scored_sha256"] == "00" * 32
    assert table["shared_protocol"]["windows_sha256"] == WINDOWS
    assert "no" in table["valid_code_length"]["reproduced_cf_total"]
    assert rows["5L_w0"]["published"]["pure_ar_valid"] is False and rows["5L_w03"]["published"]["pure_ar_valid"] is True
    assert rows["5L_w0"]["reproduced_original_protocol"]["pure_ar_bpb_unclamped_bytes"] == pytest.approx(1.4579, abs=5e-5)


def test_audit_table_away_from_the_published_settings(tmp_path, capsys):
    """At other settings the published windows are not redrawn: the published Pure-AR's validity is
    then unknown and said so."""
    manifest, cells = hand_made_run(tmp_path)
    for path in cells.glob("*.original.json"):
        path.write_text(path.read_text().replace('"n_seqs": 500', '"n_seqs": 20'))
    assert audit_table.main(["--manifest", str(manifest), "--cells_dir", str(cells)]) == 0
    md = capsys.readouterr().out
    assert "| 1.5231 (clamped bytes; validity not checked) | 1.4009 | 1.5231 | 1.4009 |" in row_of(md, "5L w=0.3")
    # Same weights, but other windows than the published ones: no 0.002 verdict either.
    assert "n/a (not the published windows)" in row_of(md, "11L w=0.3 seed 1337")


@pytest.mark.parametrize("break_it, fragment", [
    (lambda cells: (cells / "11L_w1.shared.json").unlink(), "11L_w1.shared.json: missing"),
    (lambda cells: (cells / "5L_w1.original.json").write_text(
        (cells / "5L_w03.original.json").read_text()), "expected 5L_w1.npz"),
    (lambda cells: (cells / "5L_w1.original.json").write_text(
        (cells / "5L_w1.original.json").read_text().replace('"seq_len": 1024', '"seq_len": 512')),
     "original-protocol cells ran with different settings"),
    (lambda cells: (cells / "11L_w0.original.json").write_text("{"), "unreadable JSON"),
])
def test_audit_table_bad_input_is_one_line(tmp_path, capsys, break_it, fragment):
    manifest, cells = hand_made_run(tmp_path)
    break_it(cells)
    assert audit_table.main(["--manifest", str(manifest), "--cells_dir", str(cells), "--out_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not (tmp_path / "audit_table.md").exists() and not (tmp_path / "audit_table.json").exists()


def test_audit_table_refuses_windows_that_differ(tmp_path, capsys):
    manifest, cells = hand_made_run(tmp_path, windows={"11L_w0": "cd" * 32})
    assert audit_table.main(["--manifest", str(manifest), "--cells_dir", str(cells)]) == 1
    assert "did not all score the same windows" in capsys.readouterr().err


# ----------------------------------------------------------------------------- audit_original.sh

EVAL_CF_CODE = (REPO / "scripts" / "meadow_golf" / "eval" / "eval_cf.py").read_text()
EVAL_CF_READY = "--original_arch" in EVAL_CF_CODE and "--protocol" in EVAL_CF_CODE
SETTINGS = ("N_SEQS", "SEQ_LEN", "SEED", "DEVICE", "OUT_DIR", "FETCH_DIR", "CACHE_DIR", "DECODERS", "ARCH_5L",
            "ARCH_11L", "PYTHON")


def audit(tmp_path: Path, hub: Path, **settings) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith("HF_")}
    # Tiny stand-ins: 2 layers d=64, vocabulary 1024, XSA on the last block (the fixture's config).
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(hub),
                "PYTHON": sys.executable, "N_SEQS": "2", "SEQ_LEN": "16", "DEVICE": "cpu", "OMP_NUM_THREADS": "1",
                "ARCH_5L": "--xsa_last_n 1", "ARCH_11L": "--xsa_last_n 1", **settings})
    return subprocess.run(["bash", str(EXP / "audit_original.sh")], env=env, capture_output=True, text=True,
                          timeout=600)


def test_audit_original_stops_early_on_bad_settings(tmp_path, hub):
    result = audit(tmp_path, hub, N_SEQS="many", OUT_DIR=str(tmp_path / "out"))
    assert_one_error_line(result, "N_SEQS=many")
    result = audit(tmp_path, hub, PYTHON=str(tmp_path / "no_python"), OUT_DIR=str(tmp_path / "out"))
    assert_one_error_line(result, "not found")


@pytest.mark.skipif(not EVAL_CF_READY, reason="eval_cf.py has no --original_arch / --protocol yet")
def test_audit_original_smoke_end_to_end(tmp_path, hub, stand_ins):
    out = tmp_path / "audit"
    result = audit(tmp_path, hub, OUT_DIR=str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    n_cells = 2 * len(stand_ins)
    for k in range(1, n_cells + 1):
        assert re.search(rf"\[cell {k}/{n_cells}\] \S+ (original|shared): start; elapsed \d+ s, ETA ", result.stdout)
    cells = out / "cells"
    for tag in stand_ins:
        for protocol in ("original", "shared"):
            assert (cells / f"{tag}.{protocol}.json").is_file() and (cells / f"{tag}.{protocol}.log").is_file()
    table = json.loads((out / "audit_table.json").read_text())
    assert [r["tag"] for r in table["rows"]] == [*ABLATION, "11L_w03_s1337"]
    for r in table["rows"]:
        assert set(r["shared_protocol"]) == {"ar", "cf_valid", "cf_bidir_skeleton"}
        assert all(s["valid_code_length"] for s in r["shared_protocol"].values())
        assert r["reproduced_original_protocol"]["cf_total"] > 0
    assert table["original_protocol"]["n_seqs"] == 2 and table["shared_protocol"]["seq_len"] == 16
    assert "| 11L w=0.3 seed 1337 |" in result.stdout  # the table is printed at the end
    seed_row = table["rows"][-1]
    assert seed_row["same_checkpoint"] and seed_row["comparison"]["within_tolerance"] is None  # 2 x 16 windows

    again = audit(tmp_path, hub, OUT_DIR=str(out))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(": skip, ") == n_cells
    other = audit(tmp_path, hub, OUT_DIR=str(out), SEQ_LEN="8")
    assert_one_error_line(other, "was started with other settings")
