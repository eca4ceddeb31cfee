"""Bad input to the evaluation CLIs (eval_cf.py, leakage_test.py, gen_test.py) ends in exactly one
`error: ...` line on stderr that names the file or the problem, exit status 1, and nothing
written: no --json_out file, no temporary file next to it, nothing on stdout.

Each case runs every CLI it applies to, in-process through main(argv). The checkpoints are tiny
random-init models (leakage_test.random_init_model) saved with checkpoint.py: these cases need a
model that loads, not a trained one, so they do not depend on the trainer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from meadow_golf.eval import eval_cf
from meadow_golf.eval import generate as gen_test
from meadow_golf.eval import leakage as leakage_test
from meadow_golf.data.challenge_format import read_shard, write_shard
from meadow_golf.model.checkpoint import save_npz, save_torch_checkpoint
from meadow_golf.model.gpt import state_dict_numpy
from meadow_golf.eval.backends import load_backend

CLIS = {"eval_cf": eval_cf.main, "leakage_test": leakage_test.main, "gen_test": gen_test.main}
# Small, valid settings for each CLI; a case appends the flags it changes (argparse: the last one wins).
BASE_FLAGS = {
    "eval_cf": ["--n_seqs", "2", "--seq_len", "8", "--decoders", "ar"],
    "leakage_test": ["--audit_seq_len", "8", "--norm_vocab", "3", "--norm_len", "3"],
    "gen_test": ["--n_windows", "2", "--seq_len", "16", "--spans", "2", "--rounds", "1", "--max_new_tokens", "2"],
}
ALL = tuple(CLIS)


def tokenizer_of(data_dir: Path) -> Path:
    return data_dir / json.loads((data_dir / "meta.json").read_text())["tokenizer"]


def save_random_model(folder: Path, vocab: int) -> tuple[Path, Path]:
    """(.npz, step .pt) of a tiny random-init model with this vocabulary."""
    model, config = leakage_test.random_init_model(vocab, 0, load_backend("torch", "cpu"))
    npz, pt = folder / f"model_v{vocab}.npz", folder / f"step_v{vocab}.pt"
    save_npz(npz, state_dict_numpy(model), config.to_dict())
    save_torch_checkpoint(pt, {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                               "config": config.to_dict(), "step": 0})
    return npz, pt


@pytest.fixture(scope="module")
def inputs(shakespeare_data, tiny_sp_model, tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("bad_inputs")
    vocab = json.loads((shakespeare_data / "meta.json").read_text())["vocab_size"]
    npz, pt = save_random_model(root, vocab)
    small_vocab_npz, _ = save_random_model(root, vocab // 2)

    truncated_npz, truncated_pt = root / "truncated.npz", root / "step_truncated.pt"
    truncated_npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    truncated_pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 3])
    # Weights without the model config, as a backend's own save_weights would write them.
    weights_only = root / "weights_only.npz"
    np.savez(weights_only, **state_dict_numpy(leakage_test.random_init_model(vocab, 0, load_backend("torch", "cpu"))[0]))
    mlx_step = root / "step_2.safetensors"
    mlx_step.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")

    # A prepared folder that lost its shards (meta.json and tokenizer still there).
    no_shards = root / "no_shards"
    no_shards.mkdir()
    for name in ("meta.json", tokenizer_of(shakespeare_data).name):
        shutil.copy(shakespeare_data / name, no_shards / name)
    # A prepared folder whose validation shard holds an id outside the vocabulary.
    bad_ids = root / "bad_ids"
    shutil.copytree(no_shards, bad_ids)
    tokens = np.array(read_shard(shakespeare_data / "fineweb_val_000000.bin"), dtype=np.int64)
    tokens[len(tokens) // 2] = vocab + 5
    write_shard(bad_ids / "fineweb_val_000000.bin", tokens)

    return SimpleNamespace(data=shakespeare_data, npz=npz, pt=pt, small_vocab_npz=small_vocab_npz,
                           truncated_npz=truncated_npz, truncated_pt=truncated_pt, weights_only=weights_only,
                           mlx_step=mlx_step, missing=root / "nope.npz", no_folder=root / "no_such_folder",
                           no_shards=no_shards, bad_ids=bad_ids, tiny_tokenizer=tiny_sp_model, vocab=vocab)


# case -> (the CLIs it applies to, inputs -> (flags appended to the base command, texts the error line
# must contain))
CASES = {
    "missing checkpoint": (ALL, lambda i: (["--checkpoint", str(i.missing)], [f"{i.missing}: checkpoint not found"])),
    "truncated npz": (ALL, lambda i: (["--checkpoint", str(i.truncated_npz)], [str(i.truncated_npz), "truncated"])),
    "truncated pt": (ALL, lambda i: (["--checkpoint", str(i.truncated_pt)], [str(i.truncated_pt), "truncated"])),
    "npz without config": (ALL, lambda i: (["--checkpoint", str(i.weights_only)],
                                           [str(i.weights_only), "no __config__"])),
    "mlx step checkpoint": (ALL, lambda i: (["--checkpoint", str(i.mlx_step)],
                                            [str(i.mlx_step), "MLX step checkpoint", "final_model.npz"])),
    "stride 1": (("eval_cf", "leakage_test"), lambda i: (["--stride", "1"], ["--stride must be >= 2"])),
    "rounds 0": (ALL, lambda i: (["--rounds", "0"], ["--rounds must be >= 1"])),
    "n_random 0": (("eval_cf", "leakage_test"), lambda i: (["--n_random", "0"], ["--n_random must be >= 1"])),
    "seq_len 1": (("eval_cf", "gen_test"), lambda i: (["--seq_len", "1"], ["--seq_len must be >= 2"])),
    "audit_seq_len 1": (("leakage_test",), lambda i: (["--audit_seq_len", "1"], ["--audit_seq_len must be >= 2"])),
    "seq_len beyond the validation split": (("eval_cf", "gen_test"), lambda i: (
        ["--seq_len", "10000000"], [str(i.data), "do not fit"])),
    "audit_seq_len beyond the validation split": (("leakage_test",), lambda i: (
        ["--audit_seq_len", "10000000"], [str(i.data), "do not fit"])),
    "batch_size 0": (("eval_cf", "gen_test"), lambda i: (["--batch_size", "0"], ["--batch_size must be >= 1"])),
    "json_out is a folder": (ALL, lambda i: (["--json_out", str(i.data)], [str(i.data), "is a folder"])),
    "data folder missing": (ALL, lambda i: (["--data_dir", str(i.no_folder)],
                                            [str(i.no_folder), "data folder does not exist"])),
    "no shards": (ALL, lambda i: (["--data_dir", str(i.no_shards)], [str(i.no_shards), "no shards"])),
    "tokenizer does not match meta.json": (ALL, lambda i: (
        ["--tokenizer_path", str(i.tiny_tokenizer)], [str(i.tiny_tokenizer), "meta.json", "does not match"])),
    "tokenizer vocab larger than the model's": (ALL, lambda i: (
        ["--checkpoint", str(i.small_vocab_npz)], [tokenizer_of(i.data).name, "larger than the model vocab"])),
    "token id out of range": (ALL, lambda i: (
        ["--data_dir", str(i.bad_ids)], [str(i.bad_ids / "fineweb_val_000000.bin"), f"token id {i.vocab + 5}"])),
}
PARAMS = [pytest.param(cli, case, id=f"{cli}-{case}") for case, (clis, _) in CASES.items() for cli in clis]


@pytest.mark.parametrize("cli, case", PARAMS)
def test_bad_input_is_one_error_line_and_nothing_written(inputs, tmp_path, capsys, cli, case):
    extra, expected = CASES[case][1](inputs)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    json_out = out_dir / f"{cli}.json"
    argv = ["--checkpoint", str(inputs.npz), "--data_dir", str(inputs.data), "--json_out", str(json_out),
            "--device", "cpu", *BASE_FLAGS[cli], *extra]

    rc = CLIS[cli](argv)

    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == eval_cf.EXIT_BAD_INPUT, (rc, captured.err)
    assert len(err) == 1 and err[0].startswith("error: "), err
    for text in expected:
        assert text in err[0], (text, err[0])
    assert captured.out == ""
    assert not json_out.exists() and list(out_dir.iterdir()) == []


@pytest.mark.parametrize("cli", ALL)
def test_the_base_command_of_each_cli_runs(inputs, tmp_path, capsys, cli):
    """The cases above differ from a working command only by what they change."""
    json_out = tmp_path / f"{cli}.json"
    argv = ["--checkpoint", str(inputs.pt), "--data_dir", str(inputs.data), "--json_out", str(json_out),
            "--device", "cpu", *BASE_FLAGS[cli]]
    rc = CLIS[cli](argv)
    # leakage_test may exit 2 on a random model (a check it makes failed); that is not bad input.
    assert rc in (eval_cf.EXIT_OK, eval_cf.EXIT_CHECK_FAILED), capsys.readouterr().err
    assert json_out.is_file()
