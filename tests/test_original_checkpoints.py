"""The original record's checkpoints load in the evaluators (checkpoint.read_checkpoint).

The weights are the recorded fixture's final_w0.3.npz (tests/fixtures/original_recipe, weights of
the original's GPTv2 under the project's names), written back under the ORIGINAL names as the
original saved them: a raw .npz, and a .pt {"step", "model", "ema"} with torch.compile's
`_orig_mod.` prefixes. Loaded through the evaluators' path, they must give exactly the logits of
the project-named load, with the config inferred from the shapes; damaged ones are refused with
one `error:` line naming the tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from meadow_golf.model import checkpoint
from meadow_golf.eval import eval_cf
from meadow_golf.eval import generate as gen_test
from meadow_golf.eval import leakage as leakage_test
from meadow_golf.model.checkpoint import CheckpointError, original_name, read_checkpoint, save_npz
from meadow_golf.model.config import param_shapes
from meadow_golf.model.gpt import GPT, GPTConfig, load_state_numpy, state_dict_numpy
from meadow_golf.eval.backends import load_backend

FIXTURE = Path(__file__).parent / "fixtures" / "original_recipe"
CPU = load_backend("torch", "cpu")
# The fixture's config (trajectory_w0.3.json) in GPTConfig's terms.
CONFIG_KEYS = ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "bigram_dim",
               "bigram_buckets", "xsa_last_n", "logit_softcap", "rope_base", "qk_gain_init")
CLIS = {"eval_cf": eval_cf.main, "leakage_test": leakage_test.main, "gen_test": gen_test.main}
# Small, valid settings for each CLI (as test_error_messages.py).
BASE_FLAGS = {
    "eval_cf": ["--n_seqs", "2", "--seq_len", "8", "--decoders", "ar"],
    "leakage_test": ["--audit_seq_len", "8", "--norm_vocab", "3", "--norm_len", "3"],
    "gen_test": ["--n_windows", "2", "--seq_len", "16", "--spans", "2", "--rounds", "1", "--max_new_tokens", "2"],
}


def fixture_config() -> GPTConfig:
    recorded = json.loads((FIXTURE / "trajectory_w0.3.json").read_text())["config"]
    return GPTConfig(**{k: recorded[k] for k in CONFIG_KEYS})


def project_weights() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "final_w0.3.npz") as z:
        return {k: z[k] for k in z.files}


def original_weights() -> dict[str, np.ndarray]:
    return {original_name(k): v for k, v in project_weights().items()}


def save_original_npz(path: Path, weights: dict[str, np.ndarray] | None = None) -> Path:
    np.savez(path, **(original_weights() if weights is None else weights))
    return path


def save_original_pt(path: Path, key: str = "model", prefix: str = "_orig_mod.", bf16_embedding: bool = False) -> Path:
    state = {prefix + k: torch.from_numpy(v.copy()) for k, v in original_weights().items()}
    if bf16_embedding:  # the original kept tok_emb.weight in bfloat16
        state[prefix + "tok_emb.weight"] = state[prefix + "tok_emb.weight"].bfloat16()
    payload = state if key == "" else {"step": 60, key: state, "ema": None}
    torch.save(payload, path)
    return path


def reference_model() -> GPT:
    model = GPT(fixture_config())
    load_state_numpy(model, project_weights())
    return model.eval()


TOKENS = torch.as_tensor(np.random.default_rng(0).integers(0, 1024, size=(2, 40)))


@torch.no_grad()
def logits(model: GPT) -> dict[bool, torch.Tensor]:
    return {causal: model(TOKENS, is_causal=causal) for causal in (True, False)}


# ----------------------------------------------------------------------------- loading


def test_original_npz_and_pt_give_exactly_the_project_logits(tmp_path):
    expected = logits(reference_model())
    for path in (save_original_npz(tmp_path / "final.npz"), save_original_pt(tmp_path / "step_final.pt")):
        model, config, how = eval_cf.load_checkpoint(str(path), CPU, xsa_last_n=1)
        assert config == fixture_config(), path
        assert how["format"].startswith("original") and "--xsa_last_n" in how["config_from"]
        for causal, reference in logits(model).items():
            assert torch.equal(reference, expected[causal]), (path, causal)


@pytest.mark.parametrize("key, prefix", [("state_dict", ""), ("raw_model", "module."), ("", "module._orig_mod.")])
def test_other_pt_layouts_the_original_evaluator_accepted(tmp_path, key, prefix):
    loaded = read_checkpoint(save_original_pt(tmp_path / "x.pt", key=key, prefix=prefix), xsa_last_n=1)
    assert loaded.source == "original" and set(loaded.weights) == set(project_weights())
    for name, value in project_weights().items():
        np.testing.assert_array_equal(loaded.weights[name], value)


def test_bf16_tensors_become_float32(tmp_path):
    loaded = read_checkpoint(save_original_pt(tmp_path / "bf.pt", bf16_embedding=True), xsa_last_n=1)
    emb = loaded.weights["tok_emb.weight"]
    assert emb.dtype == np.float32
    np.testing.assert_array_equal(emb, torch.from_numpy(project_weights()["tok_emb.weight"]).bfloat16().float().numpy())


def test_config_inferred_from_the_shapes(tmp_path):
    config = read_checkpoint(save_original_npz(tmp_path / "m.npz"), xsa_last_n=1).config
    recorded = json.loads((FIXTURE / "trajectory_w0.3.json").read_text())["config"]
    for key in CONFIG_KEYS:
        assert config[key] == recorded[key], key
    # A different shape: 3 layers, 4 heads of 16, 1 KV head, MLP 2x, 512 buckets of 8, vocab 96.
    other = GPTConfig(vocab_size=96, num_layers=3, model_dim=64, num_heads=4, num_kv_heads=1, mlp_mult=2,
                      bigram_dim=8, bigram_buckets=512, xsa_last_n=0)
    torch.manual_seed(0)
    path = save_original_npz(tmp_path / "other.npz",
                             {original_name(k): v for k, v in state_dict_numpy(GPT(other)).items()})
    assert GPTConfig.from_dict(read_checkpoint(path, xsa_last_n=0).config) == other


SHAPE_CONFIGS = [
    fixture_config(),
    GPTConfig(vocab_size=50, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=2, bigram_dim=4, xsa_last_n=1),
    GPTConfig(vocab_size=50, num_layers=5, model_dim=48, num_heads=6, num_kv_heads=3, mlp_mult=4, bigram_dim=4),
    # Every optional component off, and the absorbing noise's mask row on.
    GPTConfig(vocab_size=50, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, bigram_dim=0, xsa_last_n=0,
              smear_gate=False, unet_skips=False, layer_scale=False, resid_mix=False, qk_norm=False, mask_token=True),
]


@pytest.mark.parametrize("config", SHAPE_CONFIGS)
def test_param_shapes_are_the_torch_models_state_dict(config):
    state = GPT(config).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == param_shapes(config)


@pytest.mark.parametrize("config", SHAPE_CONFIGS)
def test_param_shapes_are_the_mlx_models_parameters(config):
    pytest.importorskip("mlx.core")
    from mlx.utils import tree_flatten

    from meadow_golf.model.gpt_mlx import GPT as MLXGPT

    params = dict(tree_flatten(MLXGPT(config).parameters()))
    assert {k: tuple(v.shape) for k, v in params.items()} == param_shapes(config)


def test_original_arch_shorthand(tmp_path):
    """--original_arch 5L gives xsa_last_n 2 on a 5-layer d=256 state dict and refuses other shapes."""
    five = GPTConfig(vocab_size=64, num_layers=5, model_dim=256, bigram_dim=8, bigram_buckets=64, xsa_last_n=2)
    torch.manual_seed(0)
    path = save_original_npz(tmp_path / "5L.npz", {original_name(k): v for k, v in state_dict_numpy(GPT(five)).items()})
    loaded = read_checkpoint(path, original_arch="5L")
    assert GPTConfig.from_dict(loaded.config) == five and "--original_arch 5L" in loaded.describe()["config_from"]
    with pytest.raises(CheckpointError, match="--original_arch 11L has num_layers 11, the checkpoint's shapes give 5"):
        read_checkpoint(path, original_arch="11L")
    with pytest.raises(CheckpointError, match="--original_arch 5L has num_layers 5, the checkpoint's shapes give 2"):
        read_checkpoint(save_original_npz(tmp_path / "tiny.npz"), original_arch="5L")


def test_project_checkpoints_unchanged_and_flags_only_repeat_their_config(tmp_path):
    config = fixture_config()
    npz = tmp_path / "final_model.npz"
    save_npz(npz, project_weights(), config.to_dict())
    pt = tmp_path / "step_final.pt"
    checkpoint.save_torch_checkpoint(pt, {"model": {k: torch.from_numpy(v) for k, v in project_weights().items()},
                                          "config": config.to_dict(), "step": 60})
    expected = logits(reference_model())
    for path in (npz, pt):
        for flags in ({}, {"xsa_last_n": 1}):
            model, got, how = eval_cf.load_checkpoint(str(path), CPU, **flags)
            assert got == config and how["format"] == "meadow-golf"
            assert torch.equal(logits(model)[True], expected[True])
        contradiction = r"--xsa_last_n 2 contradicts the checkpoint's own config \(xsa_last_n 1\)"
        with pytest.raises(CheckpointError, match=contradiction):
            read_checkpoint(path, xsa_last_n=2)
        with pytest.raises(CheckpointError, match=r"--original_arch 5L \(num_layers 5\) contradicts"):
            read_checkpoint(path, original_arch="5L")


def test_mlx_reads_the_same_weights(tmp_path):
    pytest.importorskip("mlx.core")
    from meadow_golf.eval import mlx_backend

    path = save_original_npz(tmp_path / "m.npz")
    config, weights = mlx_backend.read_weights(path, xsa_last_n=1)
    assert GPTConfig.from_dict(config) == fixture_config()
    for name, value in project_weights().items():
        np.testing.assert_array_equal(weights[name], value)
    with pytest.raises(CheckpointError, match="--xsa_last_n"):
        mlx_backend.read_weights(path)


# ----------------------------------------------------------------------------- refusals, through every CLI


def damaged(kind: str) -> dict[str, np.ndarray]:
    w = original_weights()
    if kind == "renamed":
        w["blocks.0.attn.query.weight"] = w.pop("blocks.0.attn.c_q.weight")
    elif kind == "missing":
        del w["blocks.1.mlp.proj.weight"]
    elif kind == "mis-shaped":
        w["blocks.1.attn.c_v.weight"] = np.zeros((40, 64), np.float32)
    elif kind == "duplicate":
        w["blocks.0.mlp.up.weight"] = w["blocks.0.mlp.fc.weight"]
    return w


# kind -> (flags, texts the one error line must contain)
REFUSALS = {
    "renamed": (["--xsa_last_n", "1"], ["unexpected tensor 'blocks.0.attn.query.weight'",
                                        "missing tensor 'blocks.0.attn.c_q.weight'"]),
    "missing": (["--xsa_last_n", "1"], ["missing tensor 'blocks.1.mlp.proj.weight'"]),
    "mis-shaped": (["--xsa_last_n", "1"], ["tensor 'blocks.1.attn.c_v.weight' has shape (40, 64), expected (32, 64)"]),
    "duplicate": (["--xsa_last_n", "1"], ["'blocks.0.mlp.fc.weight' and 'blocks.0.mlp.up.weight' are both"]),
    "no xsa flag": ([], ["no __config__", "--xsa_last_n N or --original_arch 5L|11L"]),
    "xsa beyond the layers": (["--xsa_last_n", "3"], ["xsa_last_n 3 (from --xsa_last_n) exceeds the model's 2 layers"]),
    "flags contradict": (["--xsa_last_n", "1", "--original_arch", "5L"],
                         ["--xsa_last_n 1 contradicts --original_arch 5L"]),
    "unknown arch": (["--original_arch", "7L"], ["--original_arch"]),
    "arch disagrees with the shapes": (["--original_arch", "11L"], ["--original_arch 11L has num_layers 11"]),
}


@pytest.mark.parametrize("cli", sorted(CLIS))
@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_bad_original_checkpoint_is_one_error_line(shakespeare_data, tmp_path, capsys, cli, kind):
    flags, expected = REFUSALS[kind]
    path = tmp_path / "ckpt.npz"
    save_original_npz(path, damaged(kind))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    json_out = out_dir / "r.json"
    argv = ["--checkpoint", str(path), "--data_dir", str(shakespeare_data), "--json_out", str(json_out),
            "--device", "cpu", *BASE_FLAGS[cli], *flags]
    rc = CLIS[cli](argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == eval_cf.EXIT_BAD_INPUT, (rc, captured.err)
    assert len(err) == 1 and err[0].startswith("error: "), err
    for text in expected:
        assert text in err[0], (text, err[0])
    assert captured.out == "" and list(out_dir.iterdir()) == []


@pytest.mark.parametrize("cli", sorted(CLIS))
def test_every_cli_runs_on_an_original_checkpoint(shakespeare_data, tmp_path, capsys, cli):
    path = save_original_pt(tmp_path / "step_final.pt")
    json_out = tmp_path / "r.json"
    rc = CLIS[cli](["--checkpoint", str(path), "--data_dir", str(shakespeare_data), "--json_out", str(json_out),
                    "--device", "cpu", "--xsa_last_n", "1", *BASE_FLAGS[cli]])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads(json_out.read_text())
    assert GPTConfig.from_dict(result["config"]) == fixture_config()


def test_random_init_refuses_the_checkpoint_flags(capsys):
    rc = leakage_test.main(["--random_init", "--xsa_last_n", "1", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == eval_cf.EXIT_BAD_INPUT and len(err) == 1 and "--random_init" in err[0]
