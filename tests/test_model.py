"""Tests of the shared-weight GPT (scripts/meadow_golf/model/gpt.py), CPU only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from meadow_golf.model import gpt as M

TINY = M.GPTConfig(vocab_size=64, num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2, bigram_dim=8, bigram_buckets=16, xsa_last_n=2)


def tiny(**overrides) -> M.GPTConfig:
    return dataclasses.replace(TINY, **overrides)


def dezeroed(config: M.GPTConfig, seed: int = 0) -> M.GPT:
    """A model whose every parameter is perturbed with noise: the zero-init output projections,
    bigram table and gates would otherwise hide whole paths from the tests."""
    torch.manual_seed(seed)
    model = M.GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def random_tokens(config: M.GPTConfig, B: int, T: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (B, T), generator=g)


VARIANTS = {
    "default_tiny": tiny(),
    "bigram_off": tiny(bigram_dim=0),
    "smear_off": tiny(smear_gate=False),
    "unet_off": tiny(unet_skips=False),
    "xsa_off": tiny(xsa_last_n=0),
    "xsa_all": tiny(xsa_last_n=4),
    "layer_scale_off": tiny(layer_scale=False),
    "resid_mix_off": tiny(resid_mix=False),
    "qk_norm_off": tiny(qk_norm=False),
    "softcap_off": tiny(logit_softcap=0.0),
    "mha": tiny(num_kv_heads=4),
    "odd_layers": tiny(num_layers=5),
    "one_layer": tiny(num_layers=1, xsa_last_n=1),
    "baseline_like": tiny(bigram_dim=0, smear_gate=False, unet_skips=False, xsa_last_n=0, layer_scale=False),
}


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("is_causal", [True, False])
def test_output_shape_dtype_and_finite(name, T, is_causal):
    config = VARIANTS[name]
    model = dezeroed(config)
    logits = model(random_tokens(config, 3, T), is_causal=is_causal)
    assert logits.shape == (3, T, config.vocab_size)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    if config.logit_softcap > 0:
        assert logits.abs().max() <= config.logit_softcap


def test_disabled_components_have_no_parameters():
    keys = set(M.GPT(VARIANTS["baseline_like"]).state_dict())
    assert not any(k.startswith(("bigram.", "smear.", "skip_weights")) for k in keys)
    assert "blocks.0.resid_mix" in keys
    assert "blocks.0.resid_mix" not in M.GPT(tiny(resid_mix=False)).state_dict()


def test_skip_weights_shape_for_odd_and_even_depth():
    assert M.GPT(tiny(num_layers=4)).skip_weights.shape == (2, 32)
    assert M.GPT(tiny(num_layers=5)).skip_weights.shape == (2, 32)
    assert M.GPT(tiny(num_layers=1, xsa_last_n=0)).skip_weights is None


def test_logits_are_softcapped_tied_head_at_init():
    """At init every block is the identity (zero-init projections) and the bigram table is zero,
    so the logits are exactly softcap(rms_norm(smear(rms_norm(emb))) @ emb.T)."""
    config = tiny()
    model = M.GPT(config)
    idx = random_tokens(config, 2, 6)
    h = M.rms_norm(model.tok_emb(idx))
    h = 0.5 * h + 0.5 * M.shift_right(h)
    expected = 30.0 * torch.tanh((M.rms_norm(h) @ model.tok_emb.weight.T) / 30.0)
    torch.testing.assert_close(model(idx), expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- modes


@pytest.mark.parametrize("name", ["default_tiny", "odd_layers", "baseline_like", "xsa_all"])
def test_causal_prefix_exactly_unchanged_when_suffix_changes(name):
    config = VARIANTS[name]
    model = dezeroed(config)
    T, k = 12, 5
    a = random_tokens(config, 2, T)
    b = a.clone()
    b[:, k + 1 :] = (a[:, k + 1 :] + 1 + random_tokens(config, 2, T - k - 1, seed=9) % (config.vocab_size - 1)) % config.vocab_size
    assert (a[:, k + 1 :] != b[:, k + 1 :]).all()
    with torch.no_grad():
        la, lb = model(a, is_causal=True), model(b, is_causal=True)
    assert torch.equal(la[:, : k + 1], lb[:, : k + 1])
    # The suffix must react, or this test could not fail.
    assert (la[:, k + 1 :] - lb[:, k + 1 :]).abs().max() > 1e-3


def test_bidirectional_prefix_changes_when_suffix_changes():
    config = tiny()
    model = dezeroed(config)
    a = random_tokens(config, 2, 12)
    b = a.clone()
    b[:, -1] = (a[:, -1] + 1) % config.vocab_size
    with torch.no_grad():
        la, lb = model(a, is_causal=False), model(b, is_causal=False)
    assert (la[:, 0] - lb[:, 0]).abs().max() > 1e-4


def test_modes_share_everything_but_the_mask():
    """With T=1 there is nothing to mask, so the two modes must agree exactly."""
    config = tiny()
    model = dezeroed(config)
    idx = random_tokens(config, 4, 1)
    with torch.no_grad():
        assert torch.equal(model(idx, is_causal=True), model(idx, is_causal=False))


@pytest.mark.parametrize("is_causal", [True, False])
def test_every_parameter_gets_a_finite_nonzero_gradient(is_causal):
    config = tiny(num_layers=5)
    model = dezeroed(config)
    idx = random_tokens(config, 2, 10)
    logits = model(idx, is_causal=is_causal)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), random_tokens(config, 2, 10, seed=5).flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_bf16_autocast_forward_backward():
    config = tiny()
    model = dezeroed(config)
    idx = random_tokens(config, 2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx, is_causal=False)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.flatten())
    assert logits.dtype == torch.float32
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        reference = model(idx, is_causal=False)
    # A bound from bf16's precision, not a guess. bf16 keeps 8 significant bits: unit roundoff
    # u = 2^-9. Under CPU autocast each linear layer rounds its input, its weight and its output
    # to bf16 (products accumulate in float32): 3u per linear. A block's path to the residual
    # stream goes through at most 4 such layers in sequence (qkv, attention output projection,
    # MLP up, MLP down), so to first order a block's contribution is off by at most 12u of its
    # size, and the final hidden state after rms_norm by at most eps = 12 * L * u relative
    # (worst case: every rounding the same sign). rms_norm gives that state norm sqrt(d); the tied
    # head runs in float32, so logit v moves by at most eps * sqrt(d) * ||e_v|| (Cauchy-Schwarz),
    # and the softcap's slope is at most 1. For this config (L=4, d=32) that is about 0.77;
    # observed errors are about 0.04 (rounding errors mostly cancel rather than align).
    u = 2.0**-9
    eps = 12 * config.num_layers * u
    bound = eps * config.model_dim**0.5 * model.tok_emb.weight.detach().norm(dim=1).max().item()
    assert (logits.detach() - reference).abs().max() <= bound


# ----------------------------------------------------------------------------- components


def test_bigram_hash_hand_computed():
    idx = torch.tensor([[3, 7, 0, 1000]])
    # Position 0 sees the original's fake previous token 2047 (= buckets - 1), and
    # 27191 * 2047 = 0 mod 2047, so its bucket is 36313 * t_0 mod 2047.
    expected = [(36313 * 3 + 27191 * 2047) % 2047, (36313 * 7 + 27191 * 3) % 2047,
                (36313 * 0 + 27191 * 7) % 2047, (36313 * 1000 + 27191 * 0) % 2047]
    # By hand: 108939 - 53*2047 = 448; 335764 - 164*2047 = 56; 190337 - 92*2047 = 2013;
    # 36313000 - 17739*2047 = 1267.
    assert expected == [448, 56, 2013, 1267]
    assert M.bigram_bucket_ids(idx, 2048).tolist() == [expected]
    # Small table: the modulus is buckets - 1 and the fake previous token is buckets - 1 = 15.
    assert M.bigram_bucket_ids(torch.tensor([[1, 2]]), 16).tolist() == [[36313 % 15, (36313 * 2 + 27191 * 1) % 15]]
    # The last bucket is never produced, at any position.
    many = torch.arange(4096).view(1, -1)
    assert int(M.bigram_bucket_ids(many, 2048).max()) <= 2046


def test_bigram_module_output():
    config = tiny()
    bigram = M.GPT(config).bigram
    with torch.no_grad():
        bigram.embed.weight.normal_()
    idx = torch.tensor([[5, 9, 9]])
    buckets = M.bigram_bucket_ids(idx, config.bigram_buckets)
    expected = 0.05 * (bigram.embed.weight[buckets] @ bigram.proj.weight.T)
    torch.testing.assert_close(bigram(idx), expected)


def test_bigram_starts_at_zero():
    config = tiny()
    assert torch.equal(M.GPT(config).bigram(random_tokens(config, 2, 5)), torch.zeros(2, 5, config.model_dim))


def test_smear_gate_at_init_is_half_and_half():
    smear = M.SmearGate(4)
    x = torch.arange(1.0, 13.0).view(1, 3, 4)
    expected = torch.stack([0.5 * x[0, 0], 0.5 * x[0, 1] + 0.5 * x[0, 0], 0.5 * x[0, 2] + 0.5 * x[0, 1]]).unsqueeze(0)
    torch.testing.assert_close(smear(x), expected)


def test_smear_gate_follows_sigmoid_per_channel():
    smear = M.SmearGate(2)
    with torch.no_grad():
        smear.gate.copy_(torch.tensor([-2.0, 3.0]))
    x = torch.randn(1, 4, 2)
    g = torch.sigmoid(torch.tensor([-2.0, 3.0]))
    x_prev = torch.cat([torch.zeros(1, 1, 2), x[:, :-1]], dim=1)
    torch.testing.assert_close(smear(x), (1 - g) * x + g * x_prev)


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
@pytest.mark.parametrize("is_causal", [True, False])
def test_xsa_output_orthogonal_to_own_value(num_kv_heads, is_causal):
    config = tiny(num_kv_heads=num_kv_heads)
    torch.manual_seed(0)
    x = torch.randn(2, 9, config.model_dim)
    cos, sin = M.rope_cos_sin(9, config.head_dim, config.rope_base)
    attn_xsa, attn_plain = M.Attention(config, xsa=True), M.Attention(config, xsa=False)
    attn_plain.load_state_dict(attn_xsa.state_dict())
    group = config.num_heads // num_kv_heads
    with torch.no_grad():
        v = attn_xsa.v(x).view(2, 9, num_kv_heads, config.head_dim).transpose(1, 2)
        v_unit = torch.nn.functional.normalize(v, dim=-1).repeat_interleave(group, dim=1)  # (B, H, T, hd)
        y_xsa = attn_xsa.head_outputs(x, cos, sin, is_causal)
        y_plain = attn_plain.head_outputs(x, cos, sin, is_causal)
    assert y_xsa.shape == (2, config.num_heads, 9, config.head_dim)
    assert (y_xsa * v_unit).sum(-1).abs().max() < 1e-5
    assert (y_plain * v_unit).sum(-1).abs().max() > 1e-2  # without XSA the component is there
    # XSA removes exactly that component and nothing else.
    torch.testing.assert_close(y_xsa, y_plain - (y_plain * v_unit).sum(-1, keepdim=True) * v_unit)


def test_xsa_only_on_last_layers():
    model = M.GPT(tiny(num_layers=5, xsa_last_n=2))
    assert [b.attn.xsa for b in model.blocks] == [False, False, False, True, True]
    assert not any(b.attn.xsa for b in M.GPT(tiny(xsa_last_n=0)).blocks)


def test_layer_scale_per_block():
    model = M.GPT(tiny(num_layers=3))
    assert [b.input_scale for b in model.blocks] == pytest.approx([1.0, 2**-0.5, 3**-0.5])
    assert all(b.input_scale == 1.0 for b in M.GPT(tiny(layer_scale=False)).blocks)


def test_gqa_equals_mha_with_repeated_kv_heads():
    gqa_config = tiny(num_kv_heads=2)
    torch.manual_seed(0)
    gqa = M.Attention(gqa_config, xsa=True)
    mha = M.Attention(tiny(num_kv_heads=4), xsa=True)
    hd = gqa_config.head_dim
    with torch.no_grad():
        state = dict(gqa.state_dict())
        for name in ("k.weight", "v.weight"):
            # KV head j of the GQA model serves query heads 2j and 2j+1.
            state[name] = state[name].view(2, hd, -1).repeat_interleave(2, dim=0).reshape(4 * hd, -1)
        mha.load_state_dict(state)
        x = torch.randn(2, 6, gqa_config.model_dim)
        cos, sin = M.rope_cos_sin(6, hd, gqa_config.rope_base)
        torch.testing.assert_close(gqa.head_outputs(x, cos, sin, True), mha.head_outputs(x, cos, sin, True))


def test_rope_rotates_half_pairs():
    cos, sin = M.rope_cos_sin(3, 4, 10000.0)
    torch.testing.assert_close(cos[2], torch.tensor([np.cos(2.0), np.cos(2.0 / 100.0)], dtype=torch.float32))
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).expand(1, 1, 3, 4)
    out = M.apply_rope(x, cos, sin)[0, 0, 2]
    c0, s0, c1, s1 = np.cos(2.0), np.sin(2.0), np.cos(0.02), np.sin(0.02)
    expected = torch.tensor([1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 1 * s0 + 3 * c0, 2 * s1 + 4 * c1], dtype=torch.float32)
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------- params and state


def test_preset_parameter_counts():
    counts = {name: M.GPT(M.PRESETS[name]).num_params() for name in ("5L", "11L")}
    print(f"parameter counts at vocab 4096: {counts}")
    assert M.PRESETS["5L"].vocab_size == M.PRESETS["11L"].vocab_size == 4096
    assert abs(counts["5L"] / 4.3e6 - 1) < 0.03
    assert abs(counts["11L"] / 28.4e6 - 1) < 0.03


def test_param_groups_cover_every_parameter_once():
    for config in (tiny(), VARIANTS["baseline_like"], tiny(num_layers=5)):
        model = M.GPT(config)
        groups = M.param_groups(model)
        assert set(groups) == {"muon", "embed", "scalar"}
        grouped = [name for group in groups.values() for name, _ in group]
        assert sorted(grouped) == sorted(name for name, _ in model.named_parameters())
        assert len(grouped) == len(set(grouped))
        assert all(p.ndim == 2 for _, p in groups["muon"])
        assert all(p.ndim < 2 or name.endswith("resid_mix") or name == "skip_weights" for name, p in groups["scalar"])
    groups = M.param_groups(M.GPT(tiny()))
    names = {k: {n for n, _ in v} for k, v in groups.items()}
    # The original's split: only the token embedding is "embed"; the bigram table is a Muon matrix.
    assert names["embed"] == {"tok_emb.weight"}
    assert {"bigram.embed.weight", "bigram.proj.weight", "blocks.0.attn.q.weight"} <= names["muon"]
    assert {"skip_weights", "smear.gate", "bigram.scale", "blocks.0.resid_mix", "blocks.0.attn.q_gain"} <= names["scalar"]


def test_rope_tables_are_cached_but_never_saved(monkeypatch):
    model = M.GPT(tiny(num_layers=2, xsa_last_n=1))
    cos, sin = M.rope_cos_sin(M.ROPE_CACHE_LEN, model.config.head_dim, model.config.rope_base)
    assert torch.equal(model.rope_cos, cos) and torch.equal(model.rope_sin, sin)
    assert not {"rope_cos", "rope_sin"} & set(model.state_dict())
    # Beyond the cache the tables are computed per forward: the same logits as a longer cache.
    idx = torch.randint(0, model.config.vocab_size, (2, 12))
    monkeypatch.setattr(M, "ROPE_CACHE_LEN", 8)
    short = M.GPT(model.config)
    short.load_state_dict(model.state_dict())
    assert short.rope_cos.size(0) == 8
    for causal in (True, False):
        assert torch.equal(short(idx, is_causal=causal), model(idx, is_causal=causal))


def test_state_dict_names_and_no_buffers():
    model = M.GPT(tiny(num_layers=2, xsa_last_n=1))
    keys = set(model.state_dict())
    assert keys == {name for name, _ in model.named_parameters()}  # no saved buffers (RoPE) at all
    expected_block = {"attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.proj.weight", "attn.q_gain", "mlp.up.weight", "mlp.down.weight", "attn_scale", "mlp_scale", "resid_mix"}
    expected = {"tok_emb.weight", "bigram.embed.weight", "bigram.proj.weight", "bigram.scale", "smear.gate", "skip_weights"}
    expected |= {f"blocks.{i}.{n}" for i in range(2) for n in expected_block}
    assert keys == expected
    assert tuple(model.state_dict()["blocks.0.attn.k.weight"].shape) == (2 * 8, 32)  # (out, in)


def test_numpy_round_trip_gives_identical_logits():
    config = tiny(num_layers=3)
    source = dezeroed(config, seed=3)
    arrays = M.state_dict_numpy(source)
    assert all(a.dtype == np.float32 for a in arrays.values())
    target = M.GPT(config)
    M.load_state_numpy(target, arrays)
    idx = random_tokens(config, 2, 8)
    with torch.no_grad():
        for is_causal in (True, False):
            assert torch.equal(source(idx, is_causal=is_causal), target(idx, is_causal=is_causal))
    # The arrays are copies: editing them must not touch the model.
    arrays["tok_emb.weight"][:] = 0
    assert source.tok_emb.weight.abs().sum() > 0


def test_load_state_numpy_is_strict():
    model = M.GPT(tiny())
    good = M.state_dict_numpy(model)
    before = M.state_dict_numpy(model)

    missing = {k: v for k, v in good.items() if k != "smear.gate"}
    with pytest.raises(ValueError, match="missing keys.*smear.gate"):
        M.load_state_numpy(model, missing)

    extra = dict(good, **{"lm_head.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(ValueError, match="unexpected keys.*lm_head.weight"):
        M.load_state_numpy(model, extra)

    bad_shape = dict(good, **{"blocks.0.attn.q.weight": np.zeros((32, 31), np.float32)})
    bad_shape["tok_emb.weight"] = np.ones_like(good["tok_emb.weight"])
    with pytest.raises(ValueError, match="shape mismatches.*blocks.0.attn.q.weight"):
        M.load_state_numpy(model, bad_shape)
    # A failed load modifies nothing.
    after = M.state_dict_numpy(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


# ----------------------------------------------------------------------------- config


def test_config_round_trip():
    for config in list(M.PRESETS.values()) + [tiny()]:
        d = config.to_dict()
        assert M.GPTConfig.from_dict(d) == config
        assert isinstance(d, dict) and d["num_layers"] == config.num_layers


def test_config_unknown_keys_rejected():
    d = dict(M.GPTConfig().to_dict(), n_layer=3, dropout=0.1)
    with pytest.raises(ValueError, match=r"unknown GPTConfig keys: \['dropout', 'n_layer'\]"):
        M.GPTConfig.from_dict(d)


def test_config_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="num_kv_heads"):
        M.GPTConfig(num_heads=8, num_kv_heads=3)
    with pytest.raises(ValueError, match="xsa_last_n"):
        M.GPTConfig(num_layers=2, xsa_last_n=3)


def test_presets_match_the_spec():
    five, eleven, base = M.PRESETS["5L"], M.PRESETS["11L"], M.PRESETS["baseline"]
    assert (five.num_layers, five.model_dim, five.bigram_dim, five.xsa_last_n) == (5, 256, 128, 2)
    assert (eleven.num_layers, eleven.model_dim, eleven.bigram_dim, eleven.xsa_last_n) == (11, 512, 128, 4)
    assert (base.num_layers, base.model_dim, base.vocab_size) == (9, 512, 1024)
    assert base.bigram_dim == 0 and base.xsa_last_n == 0
    assert not (base.smear_gate or base.unet_skips or base.layer_scale)


def test_cpu_fast_paths_of_rms_norm_and_rope_are_bitwise_the_composites():
    """rms_norm's CPU autograd.Function and the one-pass RoPE give the values AND gradients of the
    plain composites bit for bit, including the gradient of an input that also feeds a residual
    branch (the engine's summation order is kept)."""
    torch.manual_seed(0)
    x = (torch.randn(4, 16, 32) * torch.rand(4, 16, 1) * 3).requires_grad_()
    w = torch.randn(32)
    cos, sin = M.rope_cos_sin(16, 32, 10000.0)

    def plain_rms(t):
        return t * torch.rsqrt(t.pow(2).mean(dim=-1, keepdim=True) + M.RMS_EPS)

    def plain_rope(t):
        t1, t2 = t[..., :16], t[..., 16:]
        return torch.cat((t1 * cos - t2 * sin, t1 * sin + t2 * cos), dim=-1)

    def loss(norm, rope):
        h = x * w  # a residual branch and the norm share h
        return (h + rope(norm(h)) * 1.3).square().sum()

    g_fast = torch.autograd.grad(loss(M.rms_norm, lambda t: M.apply_rope(t, cos, sin)), x)[0]
    g_plain = torch.autograd.grad(loss(plain_rms, plain_rope), x)[0]
    assert torch.equal(M.rms_norm(x), plain_rms(x)) and torch.equal(M.apply_rope(x, cos, sin), plain_rope(x))
    assert torch.equal(g_fast, g_plain)
