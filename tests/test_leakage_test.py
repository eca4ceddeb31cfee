"""leakage_test.py: the attention check, the order and normalization audits through the torch
model, expected vs real failures, and the exit status."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cf
import leakage_test

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
    for check in ("order (model)", "order (toy Markov)", "normalization (model", "normalization (toy Markov"):
        rows = rows_of(res, check)
        assert set(rows) == set(cf.DECODERS)
        for name in VALID_DECODERS:
            assert rows[name]["result"] == "PASS", (check, name, rows[name])
    # Valid decoders with one fill: exactly normalized; the coupled toy chain exposes cf_published.
    for key, norm in res["normalization_model"].items():
        if key.endswith("n_random=1") and norm["claimed_valid"]:
            assert norm["total_prob"] == pytest.approx(1.0, abs=1e-9)
    assert res["normalization_toy"]["cf_published/n_random=1"]["total_prob"] > 1.0
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
    for check in ("order (model)", "normalization (model"):
        assert rows_of(res, check)["ar"]["result"] == "FAIL", check
    assert rows_of(res, "order (toy Markov)")["ar"]["result"] == "PASS"  # the toy scorer is not hooked


def test_restricted_scorer_is_a_normalized_conditional():
    model, _ = leakage_test.random_init_model(16, 0, torch.device("cpu"))
    scorer = leakage_test.RestrictedVocabScorer(model, torch.device("cpu"), 3)
    inputs = np.random.default_rng(0).integers(0, 3, size=(2, 5))
    for is_causal in (True, False):
        total = sum(np.exp(scorer(inputs, is_causal, np.full((2, 5), t))) for t in range(3))
        np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


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
