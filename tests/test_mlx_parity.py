"""Parity of the MLX backend with the torch one (model_mlx, optim_mlx, train_cdm_mlx, mlx_backend).

Tiny configs, float32, on the CPU. Tolerances: both backends compute in float32 but with
different kernels (matmul blocking, fused RMSNorm/RoPE/attention, reduction order), so results
agree to a few float32 ulps per op, compounded over the network: de-zeroed logits of magnitude
~4 differ by at most ~5e-6 across the variants here. Checks use rtol 1e-5 with an absolute floor
sized to the quantity (2e-5 for logits, 1e-5 for NLL and for weights after an optimizer step;
gradients rtol 1e-4 with a floor of 1e-5 * max|grad|, since a backward pass roughly doubles the
op count and small entries are differences of large ones). Exact equality is asserted only where
it is a property of the model (the causal prefix) or of one backend with itself (same seed,
resume, the .npz and the step checkpoint), never as a coincidence of two backends.

MLX JIT-compiles its fused CPU kernels with g++ on first use (one g++ run per kernel, cached
under $TMPDIR/mlx/<version>/cpu), so the tests run MLX's compiled functions eagerly
(mx.disable_compile: the same graph, unfused). The one test marked slow checks that the compiled
training step and scorer match their eager runs: ~4 s on a warm kernel cache, ~70 s on a cold one.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from functools import partial

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
torch = pytest.importorskip("torch")

from meadow_golf.eval import audits  # noqa: E402
from meadow_golf.eval import cf  # noqa: E402
from meadow_golf.eval import mlx_backend  # noqa: E402
from meadow_golf.model import gpt as M  # noqa: E402
from meadow_golf.model import gpt_mlx as MM  # noqa: E402
from meadow_golf.train import optim_mlx  # noqa: E402
from meadow_golf.eval import torch_backend  # noqa: E402
from meadow_golf.model import noise as noise_mod  # noqa: E402
from meadow_golf.train import train_cdm  # noqa: E402
from meadow_golf.train import train_cdm_mlx  # noqa: E402
from meadow_golf.data.challenge_format import load_byte_tables  # noqa: E402
from meadow_golf.model.checkpoint import load_npz, save_npz  # noqa: E402
from meadow_golf.data.loader import load_validation, resolve_tokenizer  # noqa: E402
from mlx.nn import value_and_grad  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from meadow_golf.train.optim import build_optimizers, muon_momentum, newton_schulz_orthogonalize  # noqa: E402

pytestmark = pytest.mark.mlx

TINY = M.GPTConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, bigram_dim=8,
                   bigram_buckets=16, xsa_last_n=1)
VARIANTS = {
    "default": TINY,
    "all_off": dataclasses.replace(TINY, bigram_dim=0, smear_gate=False, unet_skips=False, xsa_last_n=0,
                                   layer_scale=False, resid_mix=False, qk_norm=False, logit_softcap=0.0),
    "mha_3l_xsa_all": dataclasses.replace(TINY, num_layers=3, num_kv_heads=4, xsa_last_n=3),
    "mqa": dataclasses.replace(TINY, num_kv_heads=1),
}
LOGIT_TOL = dict(rtol=1e-5, atol=2e-5)
B, T = 2, 16

TRAIN_FLAGS = ["--num_layers", "2", "--model_dim", "32", "--num_heads", "4", "--num_kv_heads", "2",
               "--bigram_dim", "16", "--xsa_last_n", "1", "--seq_len", "32", "--batch_tokens", "256",
               "--train_budget_secs", "0", "--val_tokens", "2048", "--val_batch_size", "16",
               "--device", "cpu", "--log_every", "2"]


@pytest.fixture(autouse=True, scope="module")
def eager_cpu_mlx():
    previous, threads = mx.default_device(), torch.get_num_threads()
    mx.set_default_device(mx.cpu)
    mx.disable_compile()
    # Tiny torch ops on a busy 2-core machine: one thread avoids OpenMP spin contention with MLX.
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    mx.enable_compile()
    mx.set_default_device(previous)


def twin_models(config: M.GPTConfig, seed: int = 0):
    """A torch model with every parameter perturbed (the zero-init projections, bigram table and
    gates would otherwise hide whole paths) and an MLX model loaded with the same weights."""
    torch.manual_seed(seed)
    tm = M.GPT(config)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(0.2 * torch.randn_like(p))
    mm = MM.GPT(config)
    MM.load_state_numpy(mm, M.state_dict_numpy(tm))
    return tm, mm


def tokens(config, shape, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, config.vocab_size, size=shape, dtype=np.int64)


def torch_logits(tm, idx, causal):
    with torch.no_grad():
        return tm(torch.as_tensor(idx), is_causal=causal).numpy()


def mlx_logits(mm, idx, causal):
    return np.array(mm(mx.array(idx.astype(np.int32)), is_causal=causal))


# ----------------------------------------------------------------------------- the model


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_same_parameter_names_shapes_and_groups(name):
    config = VARIANTS[name]
    tm, mm = M.GPT(config), MM.GPT(config)
    torch_shapes = {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    mlx_shapes = {k: tuple(v.shape) for k, v in tree_flatten(mm.parameters())}
    assert mlx_shapes == torch_shapes
    assert mm.num_params() == tm.num_params()
    torch_groups = {k: {n for n, _ in v} for k, v in M.param_groups(tm).items()}
    assert {k: set(v) for k, v in MM.param_groups(mm).items()} == torch_groups
    # The same init rules: zero-init matrices and tables, constant gains, tok_emb std 0.005.
    w = MM.state_dict_numpy(mm)
    t = M.state_dict_numpy(tm)
    for k in t:
        if not np.any(t[k] != t[k].flat[0]):  # a constant init: must be the same constant
            np.testing.assert_array_equal(w[k], t[k], err_msg=k)
    assert 0.004 < w["tok_emb.weight"].std() < 0.006


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("causal", [True, False])
def test_same_weights_give_allclose_logits(name, causal):
    config = VARIANTS[name]
    tm, mm = twin_models(config)
    idx = tokens(config, (B, T))
    ref, out = torch_logits(tm, idx, causal), mlx_logits(mm, idx, causal)
    assert out.dtype == np.float32 and out.shape == (B, T, config.vocab_size)
    assert np.abs(ref).max() > 1.0  # de-zeroed: the comparison is not between two near-zero tensors
    np.testing.assert_allclose(out, ref, **LOGIT_TOL)


def test_t1_and_npz_roundtrip_through_both_loaders(tmp_path):
    tm, mm = twin_models(TINY, seed=3)
    save_npz(tmp_path / "m.npz", MM.state_dict_numpy(mm), TINY.to_dict())
    tm2, _ = torch_backend.load_model(tmp_path / "m.npz", torch.device("cpu"))
    mm2, config = mlx_backend.load_model(tmp_path / "m.npz")
    assert config == TINY and mm2.compute_dtype == mx.float32
    for L in (1, 9):
        idx = tokens(TINY, (3, L), seed=L)
        for causal in (True, False):
            np.testing.assert_allclose(mlx_logits(mm2, idx, causal), torch_logits(tm2, idx, causal), **LOGIT_TOL)
            np.testing.assert_array_equal(mlx_logits(mm2, idx, causal), mlx_logits(mm, idx, causal))
    with pytest.raises(ValueError, match="missing keys"):
        MM.load_state_numpy(MM.GPT(TINY), {k: v for k, v in M.state_dict_numpy(tm).items() if k != "smear.gate"})


def test_attention_leakage_in_mlx():
    """Causal: logits before the split are EXACTLY unchanged when the suffix changes (and the
    suffix reacts); bidirectional: the prefix changes too."""
    _, mm = twin_models(TINY, seed=5)
    a = tokens(TINY, (B, T), seed=2)
    split = 7
    b = a.copy()
    b[:, split:] = (a[:, split:] + 1 + tokens(TINY, (B, T - split), seed=3) % (TINY.vocab_size - 1)) % TINY.vocab_size
    assert (a[:, split:] != b[:, split:]).all()
    prefix, suffix = audits.prefix_change(mlx_logits(mm, a, True), mlx_logits(mm, b, True), split)
    assert prefix == 0.0 and suffix > 1e-3
    prefix, suffix = audits.prefix_change(mlx_logits(mm, a, False), mlx_logits(mm, b, False), split)
    assert prefix > 1e-4 and suffix > 1e-3


# ----------------------------------------------------------------------------- objective, optimizers


def fixed_corruption(x: np.ndarray, seed: int = 4):
    rng = np.random.default_rng(seed)
    mask = rng.random(x.shape) < 0.35
    noisy = np.where(mask, rng.integers(0, TINY.vocab_size, x.shape), x)
    return noisy, mask


def torch_train_step(tm, x, y, noisy, mask, weight, monkeypatch, retro_alpha=0.0):
    """train_cdm.train_step with its corruption replaced by the given one."""
    monkeypatch.setattr(train_cdm, "corrupt_torch", lambda *_, **__: (torch.as_tensor(noisy), torch.as_tensor(mask),
                                                                   torch.as_tensor(mask).sum()))
    tm.zero_grad(set_to_none=True)
    ar, cdm = train_cdm.train_step(tm, torch.as_tensor(x), torch.as_tensor(y), cdm_weight=weight,
                                   vocab_size=TINY.vocab_size, gen=torch.Generator(),
                                   autocast=torch.autocast("cpu", enabled=False), retro_alpha=retro_alpha)
    return float(ar), (None if cdm is None else float(cdm))


def as_mx(*arrays):
    """numpy token ids -> int32 mx arrays; boolean masks stay boolean."""
    return [mx.array(a if a.dtype == bool else a.astype(np.int32)) for a in map(np.asarray, arrays)]


@pytest.mark.parametrize("weight, retro_alpha", [(0.5, 0.0), (0.5, 0.7), (0.0, 0.7)])
def test_same_batch_same_losses_and_gradients(monkeypatch, weight, retro_alpha):
    """The same batch and the same corrupted input/mask (drawn in numpy, fed to both): the same
    AR and CDM losses, and grad(AR) + w * grad(CDM) [+ alpha * grad(reversed AR)] per parameter."""
    tm, mm = twin_models(TINY, seed=7)
    x, y = tokens(TINY, (B, T), seed=8), tokens(TINY, (B, T), seed=9)
    noisy, mask = fixed_corruption(x)
    ar_t, cdm_t = torch_train_step(tm, x, y, noisy, mask, weight, monkeypatch, retro_alpha)
    grads_t = {n: p.grad.numpy() for n, p in tm.named_parameters()}

    fn = value_and_grad(mm, partial(train_cdm_mlx.joint_loss, cdm_weight=weight, retro_alpha=retro_alpha))
    values, grads = fn(mm, *as_mx(x, y, noisy, mask))
    assert values[1].item() == pytest.approx(ar_t, rel=1e-5)
    if weight > 0:
        assert values[2].item() == pytest.approx(cdm_t, rel=1e-5)
    else:
        assert cdm_t is None and len(values) == 2
    grads_m = dict(tree_flatten(grads))
    assert set(grads_m) == set(grads_t)
    for name, g in grads_t.items():
        scale = max(np.abs(g).max(), 1e-3)
        np.testing.assert_allclose(np.array(grads_m[name]), g, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


class CountingGPT(MM.GPT):
    def __call__(self, idx, is_causal=True):
        self.calls.append((is_causal, np.array(idx)))
        return super().__call__(idx, is_causal)


@pytest.mark.parametrize("weight, retro_alpha, expected",
                         [(0.0, 0.0, [True]), (0.3, 0.0, [True, False]), (0.0, 0.5, [True, True]),
                          (0.3, 0.5, [True, True, False])])
def test_passes_per_step(weight, retro_alpha, expected):
    """--cdm_weight 0 has no denoising pass; --retro_alpha adds one causal pass on the reversed window."""
    mm = CountingGPT(TINY)
    mm.calls = []
    opt = optim_mlx.build_optimizer(MM.param_groups(mm))
    step = train_cdm_mlx.make_train_step(mm, opt, cdm_weight=weight, retro_alpha=retro_alpha)
    chunk = tokens(TINY, (B, T + 1))
    x, y = chunk[:, :-1], chunk[:, 1:]
    if weight > 0:
        noisy, mask = noise_mod.corrupt_mlx(*as_mx(x), TINY.vocab_size, mx.random.key(0))
        out = step(*as_mx(x, y), noisy, mask)
    else:
        out = step(*as_mx(x, y))
    assert [causal for causal, _ in mm.calls] == expected and len(out) == (2 if weight > 0 else 1)
    if retro_alpha > 0:
        np.testing.assert_array_equal(mm.calls[1][1], chunk[:, ::-1][:, :-1])


def test_corruption_is_keyed_and_has_one_rate_per_step():
    x = mx.array(tokens(TINY, (64, 128)).astype(np.int32))
    rates = []
    for seed in range(12):
        n1, m1 = noise_mod.corrupt_mlx(x, 64, mx.random.key(seed))
        n2, m2 = noise_mod.corrupt_mlx(x, 64, mx.random.key(seed))
        assert mx.array_equal(n1, n2).item() and mx.array_equal(m1, m2).item()
        assert mx.array_equal(mx.where(m1, x, n1), x).item()  # unmasked positions untouched
        rates.append(m1.astype(mx.float32).mean().item())
    assert 0.13 < min(rates) and max(rates) < 0.52 and max(rates) - min(rates) > 0.05


def test_one_training_step_gives_allclose_weights(monkeypatch):
    """Two full steps (forward, backward, gradient clipping, Muon + AdamW, a schedule) from the
    same state; the second exercises the momentum buffer and Adam's bias correction at step 2."""
    tm, mm = twin_models(TINY, seed=11)
    t_opts = build_optimizers(M.param_groups(tm), adam_wd=0.01)
    m_opt = optim_mlx.build_optimizer(MM.param_groups(mm), adam_wd=0.01)
    clip = 2.0
    step = train_cdm_mlx.make_train_step(mm, m_opt, cdm_weight=0.3, grad_clip=clip)
    for k, mult in enumerate([1.0, 0.6]):
        momentum = muon_momentum(k * 700)
        x, y = tokens(TINY, (B, T), seed=20 + k), tokens(TINY, (B, T), seed=30 + k)
        noisy, mask = fixed_corruption(x, seed=k)
        torch_train_step(tm, x, y, noisy, mask, 0.3, monkeypatch)
        norm = torch.nn.utils.clip_grad_norm_(tm.parameters(), clip)
        if k == 0:
            assert norm > clip  # the clipping is active, so it is compared too
        for opt in t_opts:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
                if "momentum" in group:
                    group["momentum"] = momentum
            opt.step()
        m_opt.set_schedule(mult, momentum)
        step(*as_mx(x, y, noisy, mask))
        mx.eval(mm.parameters(), m_opt.state)
        ref, out = M.state_dict_numpy(tm), MM.state_dict_numpy(mm)
        for name in ref:
            np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5, err_msg=f"step {k}: {name}")


def test_optimizers_match_torch_on_fixed_gradients():
    """Three updates from identical gradients: Muon (Nesterov, NS5, aspect scale, decoupled wd)
    and AdamW (bias correction, decoupled wd), with the lr and momentum changing per step."""
    rng = np.random.default_rng(0)
    shapes = {"wide": (8, 24), "tall": (24, 8), "square": (16, 16), "vec": (16,), "emb": (10, 4)}
    init = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    t_params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()}
    groups_t = {"muon": [(k, t_params[k]) for k in ("wide", "tall", "square")], "embed": [("emb", t_params["emb"])],
                "scalar": [("vec", t_params["vec"])]}
    t_opts = build_optimizers(groups_t, adam_wd=0.1)
    m_params = {k: mx.array(v) for k, v in init.items()}
    m_opt = optim_mlx.build_optimizer({k: [n for n, _ in v] for k, v in groups_t.items()}, adam_wd=0.1)
    for k in range(3):
        grads = {n: (rng.standard_normal(s) * 10.0 ** (k - 1)).astype(np.float32) for n, s in shapes.items()}
        mult, momentum = 1.0 - 0.3 * k, 0.92 + 0.03 * k
        for opt in t_opts:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
                if "momentum" in group:
                    group["momentum"] = momentum
        for n, p in t_params.items():
            p.grad = torch.tensor(grads[n])
        for opt in t_opts:
            opt.step()
        m_opt.set_schedule(mult, momentum)
        m_params = m_opt.apply_gradients({n: mx.array(g) for n, g in grads.items()}, m_params)
        for n, p in t_params.items():
            np.testing.assert_allclose(np.array(m_params[n]), p.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"update {k}: {n}")


@pytest.mark.parametrize("shape", [(32, 8), (8, 32), (24, 24)])
def test_newton_schulz_matches_torch(shape):
    g = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ref = newton_schulz_orthogonalize(torch.tensor(g)).numpy()
    out = np.array(optim_mlx.newton_schulz_orthogonalize(mx.array(g)))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- evaluation


def test_mlx_scorer_matches_torch_scorer_through_decode_nll():
    tm, mm = twin_models(TINY, seed=13)
    seqs = tokens(TINY, (3, T + 1), seed=14)
    t_scorer = torch_backend.TorchScorer(tm, torch.device("cpu"))
    m_scorer = mlx_backend.MLXScorer(mm)
    for decoder in sorted(cf.DECODERS):
        settings = cf.CFSettings(stride=2, rounds=2, n_random=2, seed=3, vocab_size=TINY.vocab_size)
        ref = cf.decode_nll(t_scorer, seqs, decoder, settings)
        out = cf.decode_nll(m_scorer, seqs, decoder, settings)
        assert out.dtype == np.float64 and np.isfinite(out).all()
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5, err_msg=decoder)


def run_mlx_trainer(data_dir, ckpt_dir, *extra) -> dict:
    rc = train_cdm_mlx.main([*TRAIN_FLAGS, "--data_dir", str(data_dir), "--checkpoint_dir", str(ckpt_dir), *extra])
    assert rc == 0
    return json.loads((ckpt_dir / "results.json").read_text())


def event_keys(ckpt_dir) -> dict[str, list[str]]:
    records = [json.loads(line) for line in (ckpt_dir / "train_log.jsonl").read_text().splitlines()]
    keys: dict[str, list[str]] = {}
    for r in records:
        keys.setdefault(r["event"], list(r))
    return keys


def test_mlx_trained_model_gives_the_same_bpb_in_both_evaluators(shakespeare_data, tmp_path):
    """5 MLX steps, saved; the torch evaluator on the .npz gives the MLX trainer's val_bpb. The
    logs and results.json carry the torch trainer's keys."""
    common = ["--steps", "5", "--val_every", "0", "--save_every", "0", "--cdm_weight", "0.3"]
    res = run_mlx_trainer(shakespeare_data, tmp_path / "mlx", *common)
    assert res["steps"] == 5 and res["tokens_seen"] == 5 * 256 and res["backend"] == "mlx"
    npz = tmp_path / "mlx" / "final_model.npz"
    config, _ = load_npz(npz)
    assert config == res["config"]["model"]

    tables = load_byte_tables(resolve_tokenizer(shakespeare_data, None))
    val = load_validation(shakespeare_data, 2048, config["vocab_size"])
    t_model, _ = torch_backend.load_model(npz, torch.device("cpu"))
    t_res = torch_backend.ar_val_bpb(t_model, val, 32, 16, torch.device("cpu"), tables)
    m_model, _ = mlx_backend.load_model(npz)
    m_res = mlx_backend.ar_val_bpb(m_model, val, 32, 16, tables)
    s_model, _ = mlx_backend.load_model(tmp_path / "mlx" / "step_final.safetensors")
    s_res = mlx_backend.ar_val_bpb(s_model, val, 32, 16, tables)
    assert m_res == s_res
    assert (t_res["val_tokens"], t_res["val_bytes"]) == (m_res["val_tokens"], m_res["val_bytes"])
    assert m_res["val_bpb"] == res["final_val_bpb"]
    assert t_res["val_bpb"] == pytest.approx(m_res["val_bpb"], rel=1e-5)

    # The torch trainer on the same flags: the same log records and results keys.
    assert train_cdm.main([*TRAIN_FLAGS, "--data_dir", str(shakespeare_data),
                           "--checkpoint_dir", str(tmp_path / "torch"), *common]) == 0
    assert event_keys(tmp_path / "mlx") == event_keys(tmp_path / "torch")
    m_lines = (tmp_path / "mlx" / "train.log").read_text().splitlines()
    t_lines = (tmp_path / "torch" / "train.log").read_text().splitlines()
    assert m_lines[0].startswith("config:") and m_lines[1] == t_lines[1]  # the ema / passes note
    assert [[f.split(":")[0] for f in line.split()] for line in m_lines[1:]] == \
        [[f.split(":")[0] for f in line.split()] for line in t_lines[1:]]
    t_results = json.loads((tmp_path / "torch" / "results.json").read_text())
    assert set(t_results) <= set(res)
    assert set(res["config"]["train"]) - set(t_results["config"]["train"]) == {"dtype"}


def test_mlx_seeded_runs_repeat_and_resume_is_exact(shakespeare_data, tmp_path):
    common = ["--steps", "6", "--save_every", "3", "--val_every", "0", "--cdm_weight", "0.5", "--ema_decay", "0.5",
              "--ema_start_step", "2"]
    a = run_mlx_trainer(shakespeare_data, tmp_path / "a", *common)
    b = run_mlx_trainer(shakespeare_data, tmp_path / "b", *common)
    wa = load_npz(tmp_path / "a" / "final_model.npz")[1]
    wb = load_npz(tmp_path / "b" / "final_model.npz")[1]
    assert all(np.array_equal(wa[k], wb[k]) for k in wa) and a["final_val_bpb"] == b["final_val_bpb"]
    assert a["ema"] == {"enabled": True, "used": True, "steps": 4, "decay": 0.5, "start_step": 2}

    c_dir = tmp_path / "c"
    c_dir.mkdir()
    shutil.copy(tmp_path / "a" / "step_3.safetensors", c_dir / "step_3.safetensors")
    c = run_mlx_trainer(shakespeare_data, c_dir, *common, "--resume", "auto")
    wc = load_npz(c_dir / "final_model.npz")[1]
    assert all(np.array_equal(wa[k], wc[k]) for k in wa) and c["steps"] == 6
    assert "resumed_from:" in (c_dir / "train.log").read_text()

    rc = train_cdm_mlx.main([*TRAIN_FLAGS, "--model_dim", "64", "--steps", "6", "--data_dir", str(shakespeare_data),
                             "--checkpoint_dir", str(c_dir), "--resume", "auto"])
    assert rc == 1


@pytest.mark.parametrize("extra, message", [(["--seq_len", "30"], "multiple of --seq_len"),
                                            (["--steps", "0"], "budget"),
                                            (["--steps", "2", "--grad_clip", "1"], "not implemented by the MLX")])
def test_bad_flags_give_one_error_line(tmp_path, capsys, monkeypatch, extra, message):
    # A flag of train_cdm's parser that the MLX trainer does not know is refused, not ignored.
    monkeypatch.setattr(train_cdm_mlx, "SUPPORTED_FLAGS", train_cdm_mlx.SUPPORTED_FLAGS - {"grad_clip"})
    rc = train_cdm_mlx.main([*TRAIN_FLAGS, "--data_dir", str(tmp_path), "--checkpoint_dir", str(tmp_path / "c"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error:") and message in err[0]


# ----------------------------------------------------------------------------- compiled functions


@pytest.mark.slow
def test_compiled_step_and_scorer_match_eager(monkeypatch):
    """The compiled step (state named as inputs/outputs) does what the eager one does, sees a
    learning rate changed between calls, and the compiled scorer matches the eager scorer."""
    # The components' numerics are checked against torch above; this is about compile mechanics,
    # so the plainest config keeps the cold-cache JIT (one g++ run per fused kernel) short.
    config = VARIANTS["all_off"]
    _, m_eager = twin_models(config, seed=17)
    _, m_comp = twin_models(config, seed=17)
    x, y = tokens(TINY, (B, T), seed=18), tokens(TINY, (B, T), seed=19)
    noisy, mask = fixed_corruption(x)
    batch = as_mx(x, y, noisy, mask)
    opts = {}
    steps = {}
    for name, model, compiled in (("eager", m_eager, False), ("compiled", m_comp, True)):
        (mx.enable_compile if compiled else mx.disable_compile)()
        opts[name] = optim_mlx.build_optimizer(MM.param_groups(model))
        opts[name].init(model.trainable_parameters())
        steps[name] = train_cdm_mlx.make_train_step(model, opts[name], cdm_weight=0.3)
    try:
        for mult in (1.0, 0.5, 0.0):
            before = MM.state_dict_numpy(m_comp)
            for name, model in (("eager", m_eager), ("compiled", m_comp)):
                (mx.enable_compile if name == "compiled" else mx.disable_compile)()
                opts[name].set_schedule(mult, 0.95)
                steps[name](*batch)
                mx.eval(model.state, opts[name].state)
            e, c = MM.state_dict_numpy(m_eager), MM.state_dict_numpy(m_comp)
            for k in e:
                np.testing.assert_allclose(c[k], e[k], rtol=1e-5, atol=1e-6, err_msg=f"mult {mult}: {k}")
            if mult == 0.0:  # lr 0 read from the state at call time: nothing moves
                assert all(np.array_equal(c[k], before[k]) for k in c)
        mx.enable_compile()
        seqs = tokens(TINY, (2, T + 1), seed=21)
        comp = cf.decode_nll(mlx_backend.MLXScorer(m_comp), seqs, "cf_valid", cf.CFSettings(vocab_size=TINY.vocab_size))
        mx.disable_compile()
        eager = cf.decode_nll(mlx_backend.MLXScorer(m_comp), seqs, "cf_valid",
                              cf.CFSettings(vocab_size=TINY.vocab_size))
        np.testing.assert_allclose(comp, eager, rtol=1e-5, atol=1e-5)
    finally:
        mx.disable_compile()
