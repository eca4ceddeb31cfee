"""Issue 13, items 3-7: the trainers refuse bad input before any step is taken, and nothing of a
refused run is left behind; a resume continues only the run it came from; every checkpoint names
the tokenizer it was trained with, and the evaluators refuse another one.

Each refusal is one `error:` line on stderr, exit status 1, and the expected files (or their
absence) are compared against what the test itself wrote or computed.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest

from meadow_golf.eval import eval_cf
from meadow_golf.eval import generate as gen_test
from meadow_golf.eval import leakage as leakage_test
from meadow_golf.train import train_cdm
from meadow_golf.train import run_folder
from meadow_golf.data.challenge_format import read_shard, write_shard
from meadow_golf.model.checkpoint import load_torch_checkpoint, save_npz
from meadow_golf.model.gpt import state_dict_numpy
from meadow_golf.eval.backends import load_backend

# Where a .npz or an artifact keeps the tokenizer record (checkpoint.TOKENIZER_KEY), spelled out here
# as the file format it is.
TOKENIZER_KEY = "__tokenizer__"

TINY = ["--num_layers", "2", "--model_dim", "32", "--num_heads", "4", "--num_kv_heads", "2",
        "--bigram_dim", "16", "--xsa_last_n", "1", "--seq_len", "32", "--batch_tokens", "256",
        "--train_budget_secs", "0", "--val_tokens", "2048", "--val_batch_size", "16",
        "--device", "cpu", "--log_every", "5", "--val_every", "0"]


def tokenizer_file(data_dir: Path) -> Path:
    return data_dir / json.loads((data_dir / "meta.json").read_text())["tokenizer"]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(data_dir, ckpt_dir, *extra, main=train_cdm.main) -> int:
    return main([*TINY, "--data_dir", str(data_dir), "--checkpoint_dir", str(ckpt_dir), *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes (to show a refusal changed nothing)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(shakespeare_data, tmp_path_factory) -> Path:
    """A finished w=0.3 run of 4 steps with step checkpoints at 2 (step_2.pt) and the end."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train(shakespeare_data, out, "--steps", "4", "--save_every", "2") == 0
    return out


# ----------------------------------------------------------------------------- item 5: every numeric flag


@pytest.mark.parametrize("flag, value", [
    ("--num_layers", "0"), ("--model_dim", "0"), ("--num_heads", "0"), ("--num_kv_heads", "0"),
    ("--mlp_mult", "0"), ("--vocab_size", "-1"), ("--bigram_dim", "-1"), ("--xsa_last_n", "-1"),
    ("--seq_len", "0"), ("--batch_tokens", "0"), ("--val_batch_size", "0"), ("--log_every", "0"),
    ("--steps", "-1"), ("--train_budget_secs", "-5"), ("--warmdown_steps", "-1"), ("--warmdown_secs", "-1"),
    ("--momentum_warmup_steps", "-1"), ("--save_every", "-1"), ("--val_every", "-1"), ("--val_tokens", "-1"),
    ("--cdm_weight", "-0.1"), ("--retro_alpha", "-1"), ("--muon_lr", "-0.01"), ("--muon_wd", "-1"),
    ("--muon_clip", "-1"), ("--embed_lr", "-1"), ("--scalar_lr", "-1"), ("--adam_wd", "-1"), ("--grad_clip", "-1"),
    ("--muon_lr", "nan"), ("--cdm_weight", "inf"), ("--train_budget_secs", "nan"), ("--ema_decay", "1"),
    ("--ema_start_step", "-2"), ("--seed", "-1"), ("--val_tokens", "31"),
])
def test_nonsense_numeric_flag_is_refused_naming_it(shakespeare_data, tmp_path, capsys, flag, value):
    ckpt = tmp_path / "run"
    rc = train(shakespeare_data, ckpt, "--steps", "2", flag, value)
    line = one_error_line(capsys)
    assert rc == 1 and flag in line, line
    assert not ckpt.exists()


def test_structural_model_flags_are_refused_before_the_data(tmp_path, capsys):
    """--model_dim 30 with 4 heads: refused by the flags alone (the data folder does not exist)."""
    rc = train(tmp_path / "no_data", tmp_path / "run", "--steps", "2", "--model_dim", "30")
    line = one_error_line(capsys)
    assert rc == 1 and "model_dim=30 not divisible by num_heads=4" in line


# ----------------------------------------------------------------------------- item 3: inputs before the first step


def short_val_copy(data_dir: Path, dest: Path, n_tokens: int) -> Path:
    """A copy of a prepared folder whose validation split holds only n_tokens tokens."""
    shutil.copytree(data_dir, dest)
    for shard in dest.glob("fineweb_val_*.bin"):
        shard.unlink()
    tokens = np.asarray(read_shard(data_dir / "fineweb_val_000000.bin"), dtype=np.int64)[:n_tokens]
    write_shard(dest / "fineweb_val_000000.bin", tokens)
    return dest


def test_validation_split_shorter_than_one_window_is_refused_before_training(shakespeare_data, tmp_path, capsys):
    data = short_val_copy(shakespeare_data, tmp_path / "data", 20)  # < seq_len 32 + 1
    ckpt = tmp_path / "run"
    rc = train(data, ckpt, "--steps", "2", "--val_tokens", "0")
    line = one_error_line(capsys)
    assert rc == 1 and "--seq_len 32" in line and "20 tokens" in line, line
    assert not ckpt.exists()


def test_unwritable_checkpoint_dir_is_refused_before_training(shakespeare_data, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc = train(shakespeare_data, blocker / "run", "--steps", "2")
    line = one_error_line(capsys)
    assert rc == 1 and str(blocker) in line and "--checkpoint_dir" in line, line
    assert blocker.read_text() == "x"


def test_missing_resume_target_leaves_nothing(shakespeare_data, tmp_path, capsys):
    ckpt = tmp_path / "run"
    rc = train(shakespeare_data, ckpt, "--steps", "2", "--resume", str(tmp_path / "step_9.pt"))
    line = one_error_line(capsys)
    assert rc == 1 and f"{tmp_path / 'step_9.pt'}: --resume checkpoint not found" in line, line
    assert not ckpt.exists()


# ----------------------------------------------------------------------------- item 7: garbage resume, key names, paths


def test_garbage_resume_checkpoint_leaves_nothing_behind(shakespeare_data, tmp_path, capsys):
    garbage = tmp_path / "step_3.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    ckpt = tmp_path / "run"
    rc = train(shakespeare_data, ckpt, "--steps", "4", "--resume", str(garbage))
    line = one_error_line(capsys)
    assert rc == 1 and str(garbage) in line and "unreadable" in line
    assert not ckpt.exists()

    # --resume auto in the folder that holds it: the folder keeps exactly what it had.
    folder = tmp_path / "auto"
    folder.mkdir()
    shutil.copy(garbage, folder / "step_3.pt")
    before = tree(folder)
    rc = train(shakespeare_data, folder, "--steps", "4", "--resume", "auto")
    assert rc == 1 and str(folder / "step_3.pt") in one_error_line(capsys)
    assert tree(folder) == before


def test_resume_command_makes_every_path_absolute_and_drops_resume_and_overwrite():
    argv = ["exp/train_cdm.py", "--data_dir", "data/sp1024", "--checkpoint_dir=runs/a", "--resume", "runs/a/step_2.pt",
            "--tokenizer_path", "~/tok.model", "--save_path", "../out.npz", "--steps", "4", "--overwrite"]
    got = run_folder.resume_command(argv, cwd="/base/dir")
    home = str(Path("~").expanduser())
    tail = ("/base/dir/exp/train_cdm.py --data_dir /base/dir/data/sp1024 --checkpoint_dir=/base/dir/runs/a "
            f"--tokenizer_path {home}/tok.model --save_path /base/out.npz --steps 4 --resume auto")
    assert got.endswith(tail), got


# ----------------------------------------------------------------------------- item 4: resume continues only its own run


def test_resume_with_other_settings_is_refused_naming_only_the_differing_keys(finished_run, shakespeare_data,
                                                                              tmp_path, capsys):
    results_before = (finished_run / "results.json").read_bytes()
    out = tmp_path / "other"
    # log_every and checkpoint_dir differ too, but they only say where and how often to write.
    rc = train(shakespeare_data, out, "--steps", "4", "--save_every", "2", "--resume",
               str(finished_run / "step_2.pt"), "--cdm_weight", "0", "--batch_tokens", "1024", "--log_every", "1")
    line = one_error_line(capsys)
    assert rc == 1 and "does not match the flags" in line
    assert "--batch_tokens 256 (checkpoint) != 1024 (flags)" in line
    assert "--cdm_weight 0.3 (checkpoint) != 0.0 (flags)" in line
    assert line.count("!=") == 2, line  # only those two: no dict dump, no I/O flags
    assert "log_every" not in line and "{" not in line
    assert not out.exists() and (finished_run / "results.json").read_bytes() == results_before

    rc = train(shakespeare_data, out, "--steps", "4", "--resume", str(finished_run / "step_2.pt"), "--model_dim", "64")
    line = one_error_line(capsys)
    assert rc == 1 and "model_dim 32 (checkpoint) != 64 (flags)" in line and line.count("!=") == 1, line


def test_longer_step_cap_is_allowed_and_recorded(finished_run, shakespeare_data, tmp_path):
    out = tmp_path / "longer"
    rc = train(shakespeare_data, out, "--steps", "6", "--save_every", "2", "--resume", str(finished_run / "step_2.pt"),
               "--log_every", "1")
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 6
    assert results["resume_changes"] == [{"flag": "steps", "from": 4, "to": 6, "at_step": 2}]
    assert "resume_changed:--steps from:4 to:6 at_step:2" in (out / "train.log").read_text()
    # The record travels with the step checkpoints, so a second resume keeps it.
    assert load_torch_checkpoint(out / "step_4.pt")["resume_changes"] == results["resume_changes"]


def test_logs_of_a_run_killed_before_its_first_checkpoint_do_not_block_a_new_run(shakespeare_data, tmp_path):
    """Killed before any step checkpoint: only logs are left, nothing to resume; --resume auto
    (what the recipes pass) starts the run anew and rewrites them."""
    folder = tmp_path / "killed"
    folder.mkdir()
    (folder / "train.log").write_text("config:{}\n")
    (folder / "train_log.jsonl").write_text("{}\n")
    assert train(shakespeare_data, folder, "--steps", "2", "--cdm_weight", "0", "--resume", "auto") == 0
    assert (folder / "train.log").read_text().startswith("config:{\"args\"")


def test_new_run_into_a_folder_with_another_run_is_refused_then_overwritten(finished_run, shakespeare_data,
                                                                           tmp_path, capsys):
    folder = tmp_path / "reused"
    shutil.copytree(finished_run, folder)
    (folder / "notes.txt").write_text("mine")  # not the run's: --overwrite keeps it
    before = tree(folder)
    rc = train(shakespeare_data, folder, "--steps", "2", "--cdm_weight", "0")
    line = one_error_line(capsys)
    assert rc == 1 and str(folder) in line and "--overwrite" in line and "step_2.pt" in line, line
    assert tree(folder) == before

    rc = train(shakespeare_data, folder, "--steps", "2", "--cdm_weight", "0", "--overwrite")
    assert rc == 0
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["step_final.pt", "final_model.npz", "final_model.int6.lzma", "results.json",
                            "train.log", "train_log.jsonl", "notes.txt"]), names
    assert (folder / "notes.txt").read_text() == "mine"
    assert json.loads((folder / "results.json").read_text())["cdm_weight"] == 0.0
    assert "step_2.pt" not in (folder / "train.log").read_text().split("overwrite: removed")[0]
    assert not list(tmp_path.glob(".reused.overwritten.*"))
    # Nothing of the old run is left to resume: --resume auto finds no step checkpoint, so it is a
    # new run, which the finished one now in the folder refuses.
    rc = train(shakespeare_data, folder, "--steps", "2", "--cdm_weight", "0", "--resume", "auto")
    assert rc == 1 and "holds another run" in one_error_line(capsys)


def test_overwrite_with_resume_is_refused(shakespeare_data, tmp_path, capsys):
    rc = train(shakespeare_data, tmp_path / "r", "--steps", "2", "--resume", "auto", "--overwrite")
    assert rc == 1 and "--overwrite" in one_error_line(capsys)


def test_mlx_resume_with_other_settings_is_refused(shakespeare_data, tmp_path, capsys):
    pytest.importorskip("mlx.core")
    from meadow_golf.train import train_cdm_mlx

    out = tmp_path / "mlx"
    assert train(shakespeare_data, out, "--steps", "2", "--save_every", "1", main=train_cdm_mlx.main) == 0
    capsys.readouterr()
    rc = train(shakespeare_data, out, "--steps", "2", "--resume", str(out / "step_1.safetensors"), "--cdm_weight", "0",
               main=train_cdm_mlx.main)
    line = one_error_line(capsys)
    assert rc == 1 and "--cdm_weight 0.3 (checkpoint) != 0.0 (flags)" in line and line.count("!=") == 1, line
    rc = train(shakespeare_data, out, "--steps", "2", main=train_cdm_mlx.main)
    assert rc == 1 and "holds another run" in one_error_line(capsys)


# ----------------------------------------------------------------------------- item 6: the tokenizer's identity


def test_every_saved_file_records_the_tokenizer(finished_run, shakespeare_data):
    tok = tokenizer_file(shakespeare_data)
    expected_sha = sha256_of(tok)  # computed here from the file's bytes
    vocab = json.loads((shakespeare_data / "meta.json").read_text())["vocab_size"]
    records = [
        load_torch_checkpoint(finished_run / "step_2.pt")["tokenizer"],
        load_torch_checkpoint(finished_run / "step_final.pt")["tokenizer"],
        json.loads((finished_run / "results.json").read_text())["tokenizer"],
    ]
    with np.load(finished_run / "final_model.npz") as z:
        records.append(json.loads(str(z[TOKENIZER_KEY])))
    raw = lzma.decompress((finished_run / "final_model.int6.lzma").read_bytes())
    with np.load(io.BytesIO(raw)) as z:
        records.append(json.loads(str(z[TOKENIZER_KEY])))
    for rec in records:
        assert rec == {"path": str(tok.resolve()), "sha256": expected_sha, "vocab_size": vocab}


def random_checkpoint(folder: Path, vocab: int, tokenizer: dict | None) -> Path:
    model, config = leakage_test.random_init_model(vocab, 0, load_backend("torch", "cpu"))
    path = folder / f"model_{'none' if tokenizer is None else tokenizer['sha256'][:4]}.npz"
    save_npz(path, state_dict_numpy(model), config.to_dict(), tokenizer=tokenizer)
    return path


CLIS = {
    "eval_cf": (eval_cf.main, ["--n_seqs", "2", "--seq_len", "8", "--decoders", "ar"]),
    "leakage_test": (leakage_test.main, ["--audit_seq_len", "8", "--norm_vocab", "3", "--norm_len", "3"]),
    "gen_test": (gen_test.main, ["--n_windows", "2", "--seq_len", "16", "--spans", "2", "--rounds", "1",
                                 "--max_new_tokens", "2"]),
}


@pytest.mark.parametrize("cli", CLIS)
def test_evaluators_refuse_another_tokenizer_and_note_an_unrecorded_one(shakespeare_data, tmp_path, capsys, cli):
    main, flags = CLIS[cli]
    tok = tokenizer_file(shakespeare_data)
    vocab = json.loads((shakespeare_data / "meta.json").read_text())["vocab_size"]
    foreign = {"path": "/elsewhere/other_1024_bpe.model", "sha256": "ab" * 32, "vocab_size": vocab}
    own = {"path": str(tok.resolve()), "sha256": sha256_of(tok), "vocab_size": vocab}

    def run(checkpoint: Path, json_out: Path) -> int:
        return main(["--checkpoint", str(checkpoint), "--data_dir", str(shakespeare_data), "--json_out",
                     str(json_out), "--device", "cpu", *flags])

    out = tmp_path / "out"
    out.mkdir()
    rc = run(random_checkpoint(tmp_path, vocab, foreign), out / "foreign.json")
    line = one_error_line(capsys)
    assert rc == eval_cf.EXIT_BAD_INPUT
    assert foreign["path"] in line and "sha256 abababababab" in line, line
    assert str(tok.resolve()) in line and f"sha256 {own['sha256'][:12]}" in line, line
    assert list(out.iterdir()) == []

    rc = run(random_checkpoint(tmp_path, vocab, own), out / "own.json")
    assert rc in (eval_cf.EXIT_OK, eval_cf.EXIT_CHECK_FAILED)
    assert "note:" not in capsys.readouterr().err
    assert json.loads((out / "own.json").read_text())["tokenizer_check"]["checked"] is True

    unrecorded = random_checkpoint(tmp_path, vocab, None)
    rc = run(unrecorded, out / "none.json")
    err = capsys.readouterr().err
    assert rc in (eval_cf.EXIT_OK, eval_cf.EXIT_CHECK_FAILED)
    assert f"note: {unrecorded} records no tokenizer" in err
    assert json.loads((out / "none.json").read_text())["tokenizer_check"]["checked"] is False
