"""The retrofit's objective and codes, against independent computations: the absorbing noise and
its rank split, chunked cross-entropy = plain cross-entropy (values and gradients), and the
bidirectional line chain rule is a normalized distribution (summed over every line by
enumeration on a tiny retrofitted GPT)."""

import itertools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

import torch.nn.functional as F  # noqa: E402

from meadow_golf.retrofit import objective  # noqa: E402


def test_corrupt_weights_times_and_rank_split():
    x = torch.randint(0, 50, (8, 16))
    gen = torch.Generator().manual_seed(3)
    noisy, weight = objective.corrupt(x, 50, gen)
    masked = noisy == 50
    assert torch.equal(noisy[~masked], x[~masked])
    t = objective.mask_times(8, torch.Generator().manual_seed(3), "cpu")
    assert torch.all((t > 0) & (t <= 1))
    # stratified: one time in each of the 8 strata of width 1/8
    assert sorted(torch.floor((1 - t) * 8).long().tolist()) == list(range(8))
    expected = masked.float() / t[:, None]
    assert torch.allclose(weight, expected)
    # Two ranks of 4 rows each see exactly the rows of the global draw.
    parts = [objective.corrupt(x[r * 4:(r + 1) * 4], 50, torch.Generator().manual_seed(3), r, 2) for r in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), noisy)
    assert torch.allclose(torch.cat([p[1] for p in parts]), weight)


def test_chunked_ce_equals_plain_ce_and_its_gradient():
    torch.manual_seed(0)
    h = torch.randn(2, 37, 8, requires_grad=True)
    head = torch.nn.Linear(8, 11)
    y = torch.randint(0, 11, (2, 37))
    w = torch.rand(2, 37)
    w[:, 5:20] = 0  # a chunk with nothing to score is skipped
    got = objective.weighted_ce_sum(head, h, y, w, chunk=5)
    got.backward()
    g_got = h.grad.clone()
    h.grad = None
    ref = (F.cross_entropy(head(h).reshape(-1, 11), y.reshape(-1), reduction="none") * w.reshape(-1)).sum()
    ref.backward()
    assert torch.allclose(got, ref, rtol=1e-5) and torch.allclose(g_got, h.grad, rtol=1e-5, atol=1e-7)


def test_denoise_inputs_conventions():
    seq = torch.arange(10).view(1, 10)
    noisy = seq[:, 1:].clone()
    noisy[:, 2] = 99
    inp, rows = objective.denoise_inputs(seq, noisy, "shift")
    assert inp.tolist() == [[0, 1, 2, 99, 4, 5, 6, 7, 8, 9]] and rows == slice(0, 9)
    inp, rows = objective.denoise_inputs(seq, noisy, "inplace")
    assert torch.equal(inp, noisy)


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory):
    from meadow_golf.model.checkpoint import save_npz
    from meadow_golf.model.gpt import GPT, GPTConfig, state_dict_numpy

    config = GPTConfig(vocab_size=6, num_layers=2, model_dim=16, num_heads=2, num_kv_heads=1, bigram_dim=4,
                       bigram_buckets=8, xsa_last_n=1)
    torch.manual_seed(1)
    model = GPT(config)
    with torch.no_grad():  # zero-init projections would make every block the identity
        for name, p in model.named_parameters():
            if name.endswith(("proj.weight", "down.weight")):
                p.normal_(0, 0.2)
    path = tmp_path_factory.mktemp("gpt") / "base.npz"
    save_npz(path, state_dict_numpy(model), config.to_dict())
    return path


@pytest.mark.parametrize("convention", ["shift", "inplace"])
def test_line_chain_rule_is_normalized(tiny_gpt, convention):
    from meadow_golf.retrofit.base import attach_lora, load_base
    from meadow_golf.retrofit.scoring import RetrofitScorer, bidir_line_nll, causal_line_nll

    base = load_base(str(tiny_gpt))
    assert base.mask_id == 6 and base.n_real == 6
    model = attach_lora(base, r=2, alpha=4)
    with torch.no_grad():  # a non-trivial adapter
        for name, p in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                p.normal_(0, 0.3)
    scorer = RetrofitScorer(model.eval(), base, convention=convention)
    prefix, suffix = [1, 2, 3], [4, 0]
    total_bidir = total_causal = 0.0
    for line in itertools.product(range(6), repeat=2):
        total_bidir += math.exp(-bidir_line_nll(scorer, prefix, list(line), suffix).sum())
        total_causal += math.exp(-causal_line_nll(scorer, prefix, list(line)).sum())
    # float32 log-softmax: normalized up to float32 rounding
    assert total_bidir == pytest.approx(1.0, abs=1e-6) and total_causal == pytest.approx(1.0, abs=1e-6)
    # The suffix is read: changing it changes the bidirectional code of a line.
    a = bidir_line_nll(scorer, prefix, [1, 1], suffix).sum()
    b = bidir_line_nll(scorer, prefix, [1, 1], [2, 2]).sum()
    assert a != b


def test_gpt_adapter_off_is_the_base_and_causal_mode_is_causal(tiny_gpt):
    from meadow_golf.retrofit import bidir
    from meadow_golf.retrofit.base import attach_lora, load_base
    from meadow_golf.eval.torch_backend import load_model

    reference, _ = load_model(str(tiny_gpt), torch.device("cpu"))
    base = load_base(str(tiny_gpt))
    model = attach_lora(base, r=2, alpha=4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    x = torch.tensor([[1, 2, 3, 4, 5, 0, 1]])
    later = x.clone()
    later[0, 3:] = 2
    with torch.no_grad():
        with model.disable_adapter():
            off = bidir.logits(model, base, x, causal=True)
        assert torch.equal(off, reference(x, is_causal=True))
        on, on_later = bidir.logits(model, base, x, causal=True), bidir.logits(model, base, later, causal=True)
        assert not torch.equal(on, off) and torch.equal(on[:, :3], on_later[:, :3])
        b, b_later = bidir.logits(model, base, x, causal=False), bidir.logits(model, base, later, causal=False)
        assert not torch.allclose(b[:, 0], b_later[:, 0])


def test_length_code_is_a_distribution():
    from meadow_golf.retrofit.eval_bits import length_bits
    from meadow_golf.retrofit.scoring import length_code

    nats = length_code([3, 3, 4, 9, 200], 16)
    assert np.exp(-nats).sum() == pytest.approx(1.0)
    # 1 / (L (L + 1)) telescopes to 1 over L >= 1.
    assert sum(2.0 ** -length_bits(L) for L in range(1, 100000)) == pytest.approx(1.0, abs=1e-4)
