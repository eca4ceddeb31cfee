"""Absorbing-mask noise and the ELBO loss in the model, both trainers and eval_cf (issue 14).

The mask token is one extra input-only embedding row (GPTConfig.mask_token); the defaults keep
the original's model, noise and loss, so every existing checkpoint and run is unchanged.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from meadow_golf.model import noise as noise_mod
from meadow_golf.train import flags as train_flags
from meadow_golf.train import train_cdm
from meadow_golf.model.gpt import GPT, GPTConfig, state_dict_numpy

TINY = dict(vocab_size=11, num_layers=2, model_dim=16, num_heads=2, num_kv_heads=1, bigram_dim=8, xsa_last_n=1)


def test_config_default_is_the_original_model():
    assert GPTConfig.from_dict(TINY).mask_token is False  # a config without the key (old checkpoints)
    plain, masked = GPT(GPTConfig(**TINY)), GPT(GPTConfig(**TINY, mask_token=True))
    assert plain.tok_emb.weight.shape == (11, 16) and masked.tok_emb.weight.shape == (12, 16)
    assert masked.num_params() - plain.num_params() == 16  # exactly one row of model_dim
    assert GPTConfig(**TINY, mask_token=True).mask_id == 11 and GPTConfig(**TINY).mask_id is None


def test_mask_token_is_an_input_never_a_prediction():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY, mask_token=True))
    ids = torch.tensor([[1, 11, 3, 11, 5]])
    logits = model(ids, is_causal=False)
    assert logits.shape == (1, 5, 11)  # the head has vocab_size outputs
    # The mask row is read as an input: changing it changes the logits.
    with torch.no_grad():
        model.tok_emb.weight[11] += 1.0
    assert not torch.allclose(model(ids, is_causal=False), logits)


def test_mlx_model_matches_torch_with_a_mask_token():
    mx = pytest.importorskip("mlx.core")
    from meadow_golf.model import gpt_mlx as model_mlx

    torch.manual_seed(0)
    config = GPTConfig(**TINY, mask_token=True)
    weights = state_dict_numpy(GPT(config))
    twin = model_mlx.GPT(config)
    model_mlx.load_state_numpy(twin, weights)
    ids = np.array([[1, 11, 3, 11, 5, 0]])
    torch_model = GPT(config)
    from meadow_golf.model.gpt import load_state_numpy
    load_state_numpy(torch_model, weights)
    want = torch_model(torch.tensor(ids), is_causal=False).detach().numpy()
    got = np.array(twin(mx.array(ids.astype(np.int32)), is_causal=False))
    assert got.shape == (1, 6, 11)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_plain_uniform_corruption_draws_as_before():
    """The default path draws rate, mask and noise in the original order (today's behaviour)."""
    x = torch.randint(0, 50, (3, 20), generator=torch.Generator().manual_seed(1))
    noisy, mask, n_masked = noise_mod.corrupt_torch(x, 50, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    rate = 0.15 + 0.35 * torch.rand((), generator=gen)
    want_mask = torch.rand((3, 20), generator=gen) < rate
    want = torch.where(want_mask, torch.randint(0, 50, (3, 20), generator=gen), x)
    assert torch.equal(mask, want_mask) and torch.equal(noisy, want) and int(n_masked) == int(want_mask.sum())


def test_absorbing_elbo_corruption():
    x = torch.randint(0, 50, (8, 64), generator=torch.Generator().manual_seed(1))
    noisy, weight, denominator = noise_mod.corrupt_torch(x, 50, torch.Generator().manual_seed(3),
                                                       noise="absorbing", loss="elbo")
    mask = weight > 0
    assert torch.all(noisy[mask] == 50) and torch.equal(noisy[~mask], x[~mask])
    u = torch.rand((), generator=torch.Generator().manual_seed(3)).item()
    t = torch.tensor(noise_mod.elbo_times(u, 8))
    np.testing.assert_allclose((weight * t[:, None]).numpy(), mask.float().numpy(), rtol=1e-6)
    assert float(denominator) == 8 * 64
    # Stratified: one time per interval of width 1/8, all in (0, 1].
    assert torch.all((t > 1 - (torch.arange(8) + 1) / 8) & (t <= 1 - torch.arange(8) / 8))


def test_absorbing_plain_uses_the_original_rates():
    x = torch.zeros((4, 200), dtype=torch.long)
    noisy, mask, n_masked = noise_mod.corrupt_torch(x, 9, torch.Generator().manual_seed(0), noise="absorbing")
    assert mask.dtype == torch.bool and torch.all(noisy[mask] == 9)
    assert 0.1 < mask.float().mean() < 0.55


def test_mlx_absorbing_elbo_corruption():
    mx = pytest.importorskip("mlx.core")
    x = mx.zeros((4, 32), dtype=mx.int32)
    noisy, weight = noise_mod.corrupt_mlx(x, 9, mx.random.key(0), noise="absorbing", loss="elbo")
    w, n = np.array(weight), np.array(noisy)
    assert np.all(n[w > 0] == 9) and np.all(n[w == 0] == 0)
    assert np.all(w[w > 0] >= 1.0)  # 1/t with t in (0, 1]
    noisy, mask = noise_mod.corrupt_mlx(x, 9, mx.random.key(0))  # the original's path: a bool mask
    assert np.array(mask).dtype == bool


def flags(**changes):
    args = train_flags.build_parser().parse_args(["--data_dir", "x"])
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def test_flags_default_to_the_original_and_are_departures():
    args = flags()
    assert (args.noise, args.cdm_loss) == ("uniform", "plain") and train_flags.departures(args) == []
    assert train_flags.model_config(args, 16).mask_token is False
    changed = flags(noise="absorbing", cdm_loss="elbo")
    train_flags.validate_args(changed)
    assert {"noise=absorbing", "cdm_loss=elbo"} <= set(train_flags.departures(changed))
    assert train_flags.model_config(changed, 16).mask_token is True
    with pytest.raises(ValueError, match="needs --noise absorbing"):
        train_flags.validate_args(flags(cdm_loss="elbo"))


def test_train_and_evaluate_an_absorbing_model(shakespeare_data, tmp_path, capsys):
    from conftest import TINY_TRAIN_FLAGS
    from meadow_golf.eval import eval_cf

    run = tmp_path / "run"
    rc = train_cdm.main([*TINY_TRAIN_FLAGS, "--steps", "3", "--noise", "absorbing", "--cdm_loss", "elbo",
                         "--data_dir", str(shakespeare_data), "--checkpoint_dir", str(run)])
    assert rc == 0
    results = json.loads((run / "results.json").read_text())
    assert "noise=absorbing" in json.dumps(results)
    out = tmp_path / "eval.json"
    rc = eval_cf.main(["--checkpoint", str(run / "final_model.npz"), "--data_dir", str(shakespeare_data),
                       "--json_out", str(out), "--n_seqs", "3", "--seq_len", "8", "--device", "cpu",
                       "--decoders", "ar,cf_valid,bidir_l2r,bidir_confidence", "--elbo_samples", "2"])
    text = capsys.readouterr().out
    assert rc == 0, text
    result = json.loads(out.read_text())
    assert result["protocol"]["fill"] == "mask" and result["protocol"]["n_random"] == 1
    e = result["elbo"]
    assert e["label"] == "upper bound (ELBO), a valid code length in expectation" and e["bpb_se"] > 0
    assert e["bytes"] == result["decoders"]["ar"]["bytes"]  # the same windows and bytes as every decoder
    assert "upper bound (ELBO)" in text
    arrays = np.load(out.with_name("eval.windows.npz"))
    assert arrays["nll_elbo_samples"].shape == (3, 2)
    # Every decoder scores through the mask fill and is a valid code length.
    assert all(r["valid_code_length"] for r in result["decoders"].values())
    # A uniform-noise model has no mask token: the ELBO is refused with one error line.
    rc = eval_cf.main(["--checkpoint", str(run / "final_model.npz"), "--data_dir", str(shakespeare_data),
                       "--json_out", str(out), "--fill", "mask", "--n_random", "3"])
    assert rc == 1 and capsys.readouterr().err.startswith("error:")


def test_the_noise_kind_decides_the_mask_row_and_a_misfit_is_refused():
    """--noise is passed as itself: the model gets a mask row exactly for absorbing noise
    (noise.has_mask_token), a checkpoint's config tells its noise back, and a model whose rows do
    not fit the noise it is asked to train with is refused before a step."""
    assert [noise_mod.has_mask_token(n) for n in noise_mod.NOISES] == [False, True]
    for kind in noise_mod.NOISES:
        config = train_flags.model_config(flags(noise=kind), 16)
        assert noise_mod.noise_of_config(config) == kind
        noise_mod.check_noise_fits(config, kind)
    with pytest.raises(ValueError, match="unknown noise"):
        noise_mod.has_mask_token("gaussian")
    plain = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="does not fit a model with mask_token=False"):
        train_cdm.TorchStep(plain, plain, [], torch.Generator(), None, cdm_weight=0.3, noise="absorbing")

