"""eval_cf.py --protocol original (cf_original.py) against the CF reference recorded by running the
original record's eval_cf_ablation.py (tests/fixtures/original_recipe/cf_reference.json, see the
README there): the same window offsets and fill tokens from the seed, the same per-window pass-1
and pass-2 sums, cf_total and Pure-AR (through the torch scorer, and through the MLX one where
mlx is installed); and the CLI end to end on the checkpoint saved under the original's parameter
names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from meadow_golf.eval import cf
from meadow_golf.eval import cf_original
from meadow_golf.eval import eval_cf
from meadow_golf.data.challenge_format import load_byte_tables, read_shard
from meadow_golf.model.checkpoint import original_name
from meadow_golf.model.gpt import GPT, GPTConfig, load_state_numpy
from meadow_golf.eval.torch_backend import TorchScorer
from meadow_golf.eval.toy_scorers import MarkovScorer

FIXTURE = Path(__file__).parent / "fixtures" / "original_recipe"
REFERENCE = json.loads((FIXTURE / "cf_reference.json").read_text())
VAL_TOKENS = 177_229  # the prepared Shakespeare corpus's fineweb_val_000000.bin
SETTINGS = cf_original.Settings(n_seqs=8, seq_len=128, stride=2, rounds=2, n_random=3, seed=42, vocab_size=1024)
CONFIG_KEYS = ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "bigram_dim",
               "bigram_buckets", "xsa_last_n", "logit_softcap", "rope_base", "qk_gain_init")
# The fixture README's tolerances.
SUM_TOL_NATS = 1e-3
BPB_TOL = 1e-5


def fixture_model() -> GPT:
    recorded = json.loads((FIXTURE / "trajectory_w0.3.json").read_text())["config"]
    model = GPT(GPTConfig(**{k: recorded[k] for k in CONFIG_KEYS}))
    with np.load(FIXTURE / "final_w0.3.npz") as z:
        load_state_numpy(model, {k: z[k] for k in z.files})
    return model.eval()


@pytest.fixture(scope="module")
def val(shakespeare_data) -> np.ndarray:
    tokens = np.asarray(read_shard(shakespeare_data / cf_original.VAL_SHARD), dtype=np.int64)
    assert tokens.size == VAL_TOKENS
    return tokens


@pytest.fixture(scope="module")
def tables(shakespeare_data):
    meta = json.loads((shakespeare_data / "meta.json").read_text())
    return load_byte_tables(shakespeare_data / meta["tokenizer"])


@pytest.fixture(scope="module")
def result(val, tables) -> dict:
    return cf_original.run(TorchScorer(fixture_model(), torch.device("cpu")), val, tables, SETTINGS)


def test_offsets_and_fills_regenerate_from_the_seed(val):
    offsets, fills = cf_original.cf_draws(len(val), SETTINGS)
    assert offsets.tolist() == REFERENCE["offsets"]
    np.testing.assert_array_equal(cf_original.gather(val, offsets, SETTINGS.seq_len), np.load(FIXTURE / "windows.npy"))
    np.testing.assert_array_equal(fills, np.load(FIXTURE / "fills.npy"))
    assert cf_original.pure_ar_offsets(len(val), SETTINGS).tolist() == REFERENCE["verbatim_pure_ar_offsets"]
    skeleton, groups = cf_original.positions(SETTINGS.seq_len, SETTINGS.stride, SETTINGS.rounds)
    assert skeleton == REFERENCE["ar_positions"] and groups == REFERENCE["round_positions"]


def test_positions_are_the_project_schedule():
    for T, stride, rounds in ((128, 2, 2), (17, 3, 2), (10, 2, 4), (4, 2, 3)):
        schedule = cf.make_schedule(T, stride, rounds)
        skeleton, groups = cf_original.positions(T, stride, rounds)
        assert skeleton == schedule.skeleton.tolist()
        assert groups == [g.tolist() for g in schedule.round_positions]


def test_fill_order_is_the_originals_set_order_not_sorted():
    """At the published T=1024 the second round's 256 positions exceed the set's 512 slots: they
    iterate out of order, and the fills follow that order (see cf_original's docstring)."""
    _, groups = cf_original.positions(1024, 2, 2)
    assert cf_original.unresolved_order(groups, 0) == list(range(1, 1024, 2))
    order = cf_original.unresolved_order(groups, 1)
    assert sorted(order) == list(range(3, 1024, 4))
    assert order[:6] == [3, 515, 7, 519, 1019, 11]  # CPython's int-set layout

    settings = cf_original.Settings(n_seqs=1, seq_len=1024, stride=2, rounds=2, n_random=1, seed=0, vocab_size=1024)
    _, fills = cf_original.cf_draws(5000, settings)
    rng = np.random.RandomState(1)
    rng.randint(0, 5000 - 1025)  # the offset
    round0 = [rng.randint(0, 1024) for _ in range(512)]
    round1 = [rng.randint(0, 1024) for _ in range(256)]
    np.testing.assert_array_equal(fills[0, 0, 0, 1::2], round0)
    np.testing.assert_array_equal(fills[0, 1, 0, order], round1)
    assert not np.array_equal(fills[0, 1, 0, 3::4], round1)  # drawn in sorted order they would differ


def test_per_window_sums_match_the_reference(result):
    ours, ref = result["per_window"], REFERENCE["per_window"]
    assert [w["offset"] for w in ours] == REFERENCE["offsets"] == result["offsets"]
    d1 = max(abs(a["pass1_ar_nll_sum"] - b["pass1_ar_nll_sum"]) for a, b in zip(ours, ref))
    d2 = max(abs(a["pass2_cdm_nll_sum"] - b["pass2_cdm_nll_sum"]) for a, b in zip(ours, ref))
    drounds = max(abs(x - y) for a, b in zip(ours, ref)
                  for x, y in zip(a["pass2_round_nll_sums"], b["pass2_round_nll_sums"]))
    assert d1 <= SUM_TOL_NATS and d2 <= SUM_TOL_NATS and drounds <= SUM_TOL_NATS, (d1, d2, drounds)
    for a, b in zip(ours, ref):
        assert (a["bytes_clamped"], a["bytes_unclamped"]) == (b["bytes_clamped"], b["bytes_unclamped"])
    totals = REFERENCE["totals"]
    assert result["totals"]["bytes_clamped"] == totals["bytes_clamped"]
    assert abs(result["cf_total"] - totals["cf_total_bpb"]) <= BPB_TOL
    assert abs(result["cf_ar_part"] - totals["cf_ar_part_bpb"]) <= BPB_TOL
    assert abs(result["cf_cdm_part"] - totals["cf_cdm_part_bpb"]) <= BPB_TOL
    assert result["cf_total"] == result["cf_ar_part"] + result["cf_cdm_part"]


def test_pure_ar_matches_the_reference(result, val, tables):
    assert result["pure_ar"]["offsets"] == REFERENCE["verbatim_pure_ar_offsets"]
    assert abs(result["pure_ar_bpb"] - REFERENCE["verbatim_original_output"]["pure_ar_bpb"]) <= BPB_TOL
    # Recomputed from the offsets: NLL over clamped bytes (the clamp changes nothing on this corpus).
    windows = cf_original.gather(val, np.array(REFERENCE["verbatim_pure_ar_offsets"]), SETTINGS.seq_len)
    per_token = tables.token_bytes(windows[:, :-1], windows[:, 1:])
    assert result["pure_ar"]["bytes_clamped"] == np.maximum(per_token, 1).sum() == per_token.sum()
    assert result["valid_code_length"]["pure_ar_bpb"] is True
    assert result["pure_ar_bpb"] == pytest.approx(
        result["pure_ar"]["nll_sum"] / result["pure_ar"]["bytes_clamped"] / math.log(2), rel=1e-15)


@pytest.mark.mlx
def test_an_mlx_scorer_drives_the_same_protocol(val, tables, tmp_path):
    pytest.importorskip("mlx.core")
    from meadow_golf.eval import mlx_backend

    with np.load(FIXTURE / "final_w0.3.npz") as z:
        np.savez(tmp_path / "m.npz", **{original_name(k): z[k] for k in z.files})
    model, _ = mlx_backend.load_model(tmp_path / "m.npz", dtype="float32", xsa_last_n=1)
    r = cf_original.run(mlx_backend.MLXScorer(model), val, tables, SETTINGS)
    for a, b in zip(r["per_window"], REFERENCE["per_window"]):
        assert abs(a["pass1_ar_nll_sum"] - b["pass1_ar_nll_sum"]) <= SUM_TOL_NATS
        assert abs(a["pass2_cdm_nll_sum"] - b["pass2_cdm_nll_sum"]) <= SUM_TOL_NATS
    assert abs(r["cf_total"] - REFERENCE["totals"]["cf_total_bpb"]) <= BPB_TOL


class CountingScorer:
    """Records the shape and mode of every call to an inner scorer."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, inputs, is_causal, targets):
        self.calls.append((np.shape(inputs), bool(is_causal)))
        return self.inner(inputs, is_causal, targets)


class ZeroByteTables:
    """Byte tables where token 0 has no bytes (as a control token), every other token 2."""

    def token_bytes(self, prev, tgt):
        return np.where(np.asarray(tgt) == 0, 0, 2)


def test_one_window_per_forward_and_an_empty_round_draws_nothing():
    vocab = 5
    scorer = CountingScorer(MarkovScorer.sticky(vocab, stay=0.6, seed=0))
    val = np.random.default_rng(0).integers(0, 2, size=200)  # many zero-byte tokens (see ZeroByteTables)
    # T=4, stride 2: gaps {1, 3} in 3 rounds, so round 2 is empty.
    settings = cf_original.Settings(n_seqs=3, seq_len=4, stride=2, rounds=3, n_random=2, seed=7, vocab_size=vocab)
    r = cf_original.run(scorer, val, ZeroByteTables(), settings)
    assert all(shape == (1, 4) for shape, _ in scorer.calls)
    # Pure-AR: 1 causal forward per window; CF: 1 causal + 2 non-empty rounds x 2 draws.
    assert [causal for _, causal in scorer.calls] == [True] * 3 + ([True] + [False] * 4) * 3
    _, fills = cf_original.cf_draws(len(val), settings)
    assert (fills[:, 2] == -1).all() and (fills[:, 0][:, :, [1, 3]] >= 0).all()
    assert (fills[:, 1][:, :, [1]] == -1).all() and (fills[:, 1][:, :, [3]] >= 0).all()
    assert all(w["pass2_round_nll_sums"][2] == 0.0 for w in r["per_window"])
    # The clamp counts a zero-byte token as one byte: then Pure-AR is not NLL per actual byte.
    assert r["pure_ar"]["bytes_clamped"] > r["pure_ar"]["bytes_unclamped"]
    assert r["valid_code_length"]["pure_ar_bpb"] is False and r["valid_code_length"]["pure_ar_bpb_unclamped_bytes"]
    assert "clamp" in r["valid_code_length_reasons"]["pure_ar_bpb"]


def test_cli_end_to_end_on_the_original_checkpoint(shakespeare_data, result, tmp_path, capsys):
    with np.load(FIXTURE / "final_w0.3.npz") as z:
        np.savez(tmp_path / "final_w0.3.npz", **{original_name(k): z[k] for k in z.files})
    rc = eval_cf.main(["--protocol", "original", "--checkpoint", str(tmp_path / "final_w0.3.npz"),
                       "--xsa_last_n", "1", "--data_dir", str(shakespeare_data), "--n_seqs", "8", "--seq_len", "128",
                       "--stride", "2", "--rounds", "2", "--n_random", "3", "--seed", "42", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads((tmp_path / "final_w0.3.eval_cf_original.json").read_text())  # default: next to the checkpoint

    # The keys the audit reads, with the library's numbers.
    assert out["protocol"] == "original" and out["checkpoint"] == str(tmp_path / "final_w0.3.npz")
    for key in ("pure_ar_bpb", "cf_ar_part", "cf_cdm_part", "cf_total"):
        assert out[key] == result[key], key
    assert (out["n_seqs"], out["seq_len"], out["stride"], out["rounds"], out["n_random"], out["seed"]) == (
        8, 128, 2, 2, 3, 42)
    assert out["valid_code_length"]["cf_total"] is False and out["valid_code_length"]["pure_ar_bpb"] is True
    assert out["per_window"] == result["per_window"] and out["offsets"] == REFERENCE["offsets"]
    assert out["pure_ar"]["offsets"] == REFERENCE["verbatim_pure_ar_offsets"]
    assert out["precision"] == "float32" and out["batch_size"] == 1 and out["val_tokens"] == VAL_TOKENS
    assert out["checkpoint_format"]["format"].startswith("original")

    # Every printed line that shows cf_total or one of its parts says it is not a code length;
    # the Pure-AR line says its bytes are clamped.
    lines = captured.out.splitlines()
    for line in lines:
        if any(key in line for key in ("cf_total", "cf_ar_part", "cf_cdm_part", "cf_vs_ar_pct")):
            assert "NOT a valid code length" in line, line
    (pure_ar,) = [line for line in lines if line.startswith("published pure_ar_bpb:")]
    assert "clamped bytes max(b, 1)" in pure_ar and "not the challenge's byte count" in pure_ar
    assert "the published protocol" in lines[0]
    assert "progress:pure_ar 8/8" in captured.err and "progress:cf 8/8" in captured.err


@pytest.mark.parametrize("flags, text", [
    (["--batch_size", "4"], "--batch_size does not apply to --protocol original"),
    (["--full_val", "--decoders", "ar"], "--decoders, --full_val do not apply"),
    (["--seq_len", "177228"], "windows of 177229 tokens need at least 177230 validation tokens"),
])
def test_cli_refuses_what_the_original_protocol_cannot_run(shakespeare_data, tmp_path, capsys, flags, text):
    path = tmp_path / "m.npz"
    with np.load(FIXTURE / "final_w0.3.npz") as z:
        np.savez(path, **{original_name(k): z[k] for k in z.files})
    json_out = tmp_path / "out.json"
    rc = eval_cf.main(["--protocol", "original", "--checkpoint", str(path), "--xsa_last_n", "1",
                       "--data_dir", str(shakespeare_data), "--json_out", str(json_out), "--device", "cpu", *flags])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == eval_cf.EXIT_BAD_INPUT and len(err) == 1 and err[0].startswith("error: ") and text in err[0], err
    assert captured.out == "" and not json_out.exists()
