"""leakage_test.py: the attention check, the order and normalization audits through the torch
model, expected vs real failures, and the exit status."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from meadow_golf.eval import cf
from meadow_golf.eval import leakage as leakage_test
from meadow_golf.eval.backends import load_backend

# Small audits: order audit on 2 windows of 8 targets, normalization over 3**4 sequences.
SMALL = ["--audit_seq_len", "8", "--norm_vocab", "3", "--norm_len", "4", "--device", "cpu"]
VALID_DECODERS = [name for name, valid in cf.VALID.items() if valid]


@pytest.fixture(scope="module")
def trained_checkpoint(tiny_run):
    return tiny_run[0] / "final_model.npz"


def rows_of(result, check_prefix):
    return {r["decoder"]: r for r in result["rows"] if r["check"].startswith(check_prefix)}


class PeekingCausal:
    """A broken backend: the causal row i reads inputs[i + 1] instead of inputs[i] (a leaky mask)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, inputs, is_causal, targets):
        if is_causal:
            inputs = np.array(inputs)
            inputs[:, :-1] = inputs[:, 1:]
        return self.inner(inputs, is_causal, targets)


def test_random_init_passes_for_valid_decoders(tmp_path, capsys):
    out = tmp_path / "leak.json"
    rc = leakage_test.main(["--random_init", "--json_out", str(out), *SMALL])
    stdout = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out.read_text())
    att = res["attention"]
    assert att["causal"]["prefix_max_change"] == 0.0  # exactly, not approximately
    assert att["causal"]["suffix_max_change"] > 0 and att["bidirectional"]["prefix_max_change"] > 0
    assert att["passed"] and res["failures"] == [] and res["exit_status"] == 0
    for check in ("order (model)", "order (toy Markov)", "normalization per fill (model",
                  "normalization per fill (toy Markov", "normalization AM-GM bound (model",
                  "normalization AM-GM bound (toy Markov"):
        rows = rows_of(res, check)
        assert set(rows) == set(cf.DECODERS)
        for name in VALID_DECODERS:
            assert rows[name]["result"] == "PASS", (check, name, rows[name])
    # Valid decoders, each fill on its own: exactly normalized (the math of METHOD.md §6.4); the
    # coupled toy chain exposes cf_published in every fill.
    for store in ("normalization_model", "normalization_toy"):
        for key, norm in res[store].items():
            if key.endswith("/per_fill") and norm["claimed_valid"]:
                assert len(norm["fill_totals"]) == 3
                np.testing.assert_allclose(norm["fill_totals"], 1.0, rtol=0, atol=1e-12)
    assert min(res["normalization_toy"]["cf_published/per_fill"]["fill_totals"]) > 1.0
    assert res["normalization_alphabet"]["token_ids"] == [0, 1, 2]
    assert rows_of(res, "order (toy Markov)")["cf_published"]["result"] == "FAIL"
    assert "OK: every decoder that claims to be a valid code length passed" in stdout
    assert res["order_tolerance"] == 1e-5


def test_trained_model_cf_published_fails_as_expected(shakespeare_data, trained_checkpoint, tmp_path, capsys):
    out = tmp_path / "trained.json"
    rc = leakage_test.main(["--checkpoint", str(trained_checkpoint), "--data_dir", str(shakespeare_data),
                            "--decoders", "ar,cf_published,cf_valid", "--json_out", str(out), *SMALL])
    stdout = capsys.readouterr().out
    assert rc == 0  # the published decoder's failure is the expected finding, not an error
    res = json.loads(out.read_text())
    order = rows_of(res, "order (model)")
    assert order["ar"]["result"] == "PASS" and order["cf_valid"]["result"] == "PASS"
    assert order["ar"]["value"] <= 1e-5 and order["cf_valid"]["value"] <= 1e-5
    assert order["cf_published"]["result"] == "FAIL" and order["cf_published"]["value"] > 1e-3
    assert not order["cf_published"]["counts_as_failure"]
    assert res["tokens"] == "validation windows" and res["attention"]["passed"]
    line = next(line for line in stdout.splitlines() if line.startswith("order (model)") and "cf_published" in line)
    assert "FAIL" in line and "expected" in line


def test_a_leaking_decoder_that_claims_validity_fails_the_run(trained_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(cf.VALID, "cf_published", True)
    out = tmp_path / "claims.json"
    rc = leakage_test.main(["--checkpoint", str(trained_checkpoint), "--decoders", "cf_published",
                            "--json_out", str(out), *SMALL])
    stdout = capsys.readouterr().out
    assert rc == leakage_test.EXIT_CHECK_FAILED
    res = json.loads(out.read_text())
    assert res["exit_status"] == rc and any("cf_published" in f for f in res["failures"])
    assert "FAILED" in stdout


def test_a_leaky_backend_is_caught_through_the_hook(tmp_path, capsys):
    out = tmp_path / "hook.json"
    rc = leakage_test.main(["--random_init", "--decoders", "ar,cf_valid", "--json_out", str(out), *SMALL],
                           scorer_hook=PeekingCausal)
    capsys.readouterr()
    assert rc == leakage_test.EXIT_CHECK_FAILED
    res = json.loads(out.read_text())
    for check in ("order (model)", "normalization per fill (model"):
        assert rows_of(res, check)["ar"]["result"] == "FAIL", check
    assert rows_of(res, "order (toy Markov)")["ar"]["result"] == "PASS"  # the toy scorer is not hooked


def test_restricted_scorer_is_a_normalized_conditional():
    model, _ = leakage_test.random_init_model(16, 0, load_backend("torch", "cpu"))
    ids = np.array([5, 9, 2])
    scorer = leakage_test.RestrictedVocabScorer(model, load_backend("torch", "cpu"), ids)
    inputs = np.random.default_rng(0).integers(0, 3, size=(2, 5))
    for is_causal in (True, False):
        total = sum(np.exp(scorer(inputs, is_causal, np.full((2, 5), t))) for t in range(3))
        np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)
        # Independently: the model's logits of the mapped inputs, softmax over the 3 chosen ids.
        with torch.no_grad():
            logits = model(torch.as_tensor(ids[inputs]), is_causal=is_causal).double().numpy()[..., ids]
        expected = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        np.testing.assert_allclose(scorer(inputs, is_causal, np.full((2, 5), 1)), expected[..., 1], atol=1e-6)


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --checkpoint --random_init is required"),
    (["--random_init", "--stride", "1"], "--stride must be >= 2"),
    (["--random_init", "--decoders", "nope"], "unknown"),
    (["--checkpoint", "/nonexistent/x.npz"], "checkpoint not found"),
    (["--random_init", "--norm_vocab", "10", "--norm_len", "9"], "sequences"),
])
def test_bad_input_gives_one_error_line(tmp_path, capsys, argv, message):
    out = tmp_path / "never.json"
    rc = leakage_test.main([*argv, "--json_out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == leakage_test.EXIT_BAD_INPUT and len(err) == 1 and err[0].startswith("error:"), err
    assert message in err[0]
    assert not out.exists()


# ----------------------------------------------------------------------------- positive controls of the per-fill audit


def _pseudo_likelihood(scorer, prev, x, schedule, fills, nll):
    """A deliberately leaky decoder: every target scored by one bidirectional forward of the TRUE
    window (the pseudo-likelihood). No order has these conditionals, so it is no code."""
    nll[:] = -np.asarray(scorer(x, False, x), dtype=np.float64)
    return np.ones(schedule.T, dtype=bool)


@pytest.fixture
def leaky_decoder(monkeypatch):
    """Registers the leaky decoder as one that CLAIMS validity (for this test only)."""
    decoder = cf.Decoder("leaky_toy", "pseudo-likelihood (test only)", True, _pseudo_likelihood, cf._order_ar)
    monkeypatch.setitem(cf.DECODERS, decoder.name, decoder)
    monkeypatch.setitem(cf.VALID, decoder.name, True)
    return decoder.name


def test_per_fill_audit_fails_the_leaks_on_a_toy_scorer(leaky_decoder):
    from meadow_golf.eval import audits
    from meadow_golf.eval.toy_scorers import MarkovScorer

    toy = MarkovScorer.sticky(3, stay=0.8, seed=1)
    settings = cf.CFSettings(vocab_size=3, n_random=3, seed=42)
    published = audits.per_fill_normalization_audit(toy, "cf_published", settings, T=4)
    leaky = audits.per_fill_normalization_audit(toy, leaky_decoder, settings, T=4)
    valid = audits.per_fill_normalization_audit(toy, "cf_valid", settings, T=4)
    assert not published["passed"] and not leaky["passed"]
    assert published["max_abs_deviation"] > 1e-3 and leaky["max_abs_deviation"] > 1e-3
    assert valid["passed"] and valid["max_abs_deviation"] <= 1e-12
    # Each fill alone is the one-fill decode with that fill: fill 1's total, recomputed by hand.
    fills = cf.draw_fills(42, 4, 2, 3, 3)
    seqs = np.concatenate([np.zeros((81, 1), dtype=np.int64), audits.all_sequences(3, 4)], axis=1)
    nll = cf.decode_nll(toy, seqs, "cf_published", cf.CFSettings(vocab_size=3, n_random=1), fills=fills[:, 1:2])
    assert published["fill_totals"][1] == pytest.approx(np.exp(-nll.sum(axis=1)).sum(), rel=1e-12)


def test_per_fill_audit_fails_the_leaks_on_a_trained_checkpoint(shakespeare_data, trained_checkpoint, tmp_path,
                                                                 capsys, leaky_decoder):
    from meadow_golf.data.challenge_format import load_byte_tables, load_tokens

    out = tmp_path / "leaks.json"
    rc = leakage_test.main(["--checkpoint", str(trained_checkpoint), "--data_dir", str(shakespeare_data),
                            "--decoders", f"cf_published,cf_valid,{leaky_decoder}", "--n_random", "3",
                            "--json_out", str(out), *SMALL])
    capsys.readouterr()
    assert rc == leakage_test.EXIT_CHECK_FAILED  # the leaky decoder claims validity
    res = json.loads(out.read_text())
    rows = rows_of(res, "normalization per fill (model")
    assert rows["cf_published"]["result"] == "FAIL" and not rows["cf_published"]["counts_as_failure"]
    assert rows[leaky_decoder]["result"] == "FAIL" and rows[leaky_decoder]["counts_as_failure"]
    assert rows["cf_valid"]["result"] == "PASS" and rows["cf_valid"]["value"] <= 1e-9
    assert rows["cf_published"]["value"] > 1e-6 and rows[leaky_decoder]["value"] > 1e-6
    assert res["failures"] and all(f.endswith(f": {leaky_decoder}") for f in res["failures"])
    assert f"normalization per fill (model, V=3, T=4, 3 fills): {leaky_decoder}" in res["failures"]
    # The alphabet: the data's 3 most frequent ordinary tokens, counted here independently.
    tokenizer = shakespeare_data / json.loads((shakespeare_data / "meta.json").read_text())["tokenizer"]
    boundary = load_byte_tables(tokenizer).is_boundary
    ids, counts = np.unique(load_tokens(shakespeare_data, "val"), return_counts=True)
    ordinary = [(int(c), int(i)) for i, c in zip(ids, counts) if not boundary[i]]
    top = [i for _, i in sorted(ordinary, key=lambda ci: (-ci[0], ci[1]))[:3]]
    assert res["normalization_alphabet"]["token_ids"] == top
    assert not any(boundary[i] for i in res["normalization_alphabet"]["token_ids"])


PROGRESS = re.compile(r"^progress:leakage (\d+)/(\d+) (.*?)elapsed_s:([\d.]+) eta_s:([\d.]+|nan)$")


def test_progress_lines_count_every_check_with_an_eta(tmp_path, capsys):
    # Issue 13 item 8: a line per finished check on stderr, with elapsed time and an ETA, in eval_cf's format.
    decoders = ["ar", "cf_valid"]
    rc = leakage_test.main(["--random_init", "--decoders", ",".join(decoders), "--json_out",
                            str(tmp_path / "leak.json"), *SMALL])
    assert rc == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("progress:")]
    parsed = [PROGRESS.match(line) for line in lines]
    assert all(parsed), lines
    total = 1 + 6 * len(decoders)  # attention + per decoder: 2 order audits, 4 normalization audits
    assert [int(m.group(1)) for m in parsed] == list(range(1, total + 1))
    assert {int(m.group(2)) for m in parsed} == {total}
    assert parsed[0].group(3).startswith("attention")
    elapsed = [float(m.group(4)) for m in parsed]
    assert elapsed == sorted(elapsed)
    etas = [float(m.group(5)) for m in parsed]
    assert etas[-1] == 0.0
    # the ETA is elapsed per check so far x checks left (as printed, to 0.1 s rounding)
    for m, eta, el in zip(parsed, etas, elapsed):
        done = int(m.group(1))
        assert eta == pytest.approx(el / done * (total - done), abs=0.1 + 0.05 * (total - done) / done)
