"""eval_cf.py: every decoder on the same windows, METHOD.md §2 bytes, labels, the ar consistency
check against the trainer's own validation, and one-line errors for bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from meadow_golf.eval import cf
from meadow_golf.eval import eval_cf
from meadow_golf.data.challenge_format import load_byte_tables, load_tokens
from meadow_golf.eval.torch_backend import TorchScorer, ar_nll_sum_windows, ar_val_bpb, load_model

SEQ_LEN = 32
VAL_TOKENS = 2048


def run_eval(data_dir, checkpoint, json_out, *extra):
    return eval_cf.main(["--checkpoint", str(checkpoint), "--data_dir", str(data_dir), "--json_out",
                         str(json_out), "--device", "cpu", *extra])


def tokenizer_of(data_dir):
    return data_dir / json.loads((data_dir / "meta.json").read_text())["tokenizer"]


def test_every_decoder_on_the_same_windows(shakespeare_data, tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    out = tmp_path / "eval.json"
    rc = run_eval(shakespeare_data, run / "final_model.npz", out, "--n_seqs", "6", "--seq_len", "16",
                  "--batch_size", "4", "--decoders", "all")
    stdout = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["decoders"]) == set(cf.DECODERS)

    # The windows are reproducible from the recorded offsets, and every decoder saw exactly them.
    tokens = load_tokens(shakespeare_data, "val")
    offsets = np.array(res["windows"]["offsets"])
    assert offsets.size == 6 and offsets.min() >= 0 and offsets.max() + 17 <= tokens.size
    windows = tokens[offsets[:, None] + np.arange(17)]
    assert eval_cf.windows_digest(windows) == res["windows"]["sha256"]
    window_bytes = load_byte_tables(tokenizer_of(shakespeare_data)).stream_bytes(windows).sum(axis=1)
    bytes_expected = int(window_bytes.sum())
    model, _ = load_model(run / "final_model.npz", torch.device("cpu"))

    for name, r in res["decoders"].items():
        assert r["windows_sha256"] == res["windows"]["sha256"], name
        assert r["valid_code_length"] == cf.VALID[name]
        assert r["tokens"] == 6 * 16 and r["bytes"] == bytes_expected
        p1, p2 = r["parts"]["pass1"], r["parts"]["pass2"]
        assert p1["tokens"] + p2["tokens"] == r["tokens"] and p1["bytes"] + p2["bytes"] == r["bytes"]
        assert p1["bpb_part"] + p2["bpb_part"] == pytest.approx(r["bpb"], rel=1e-12)
        assert r["bpb"] == pytest.approx(r["nll_sum"] / (math.log(2) * r["bytes"]), rel=1e-12)
        assert p1["bpb_own_bytes"] == pytest.approx(p1["nll_sum"] / (math.log(2) * p1["bytes"]), rel=1e-12)
        # The BPB recomputed from per-window sums the evaluator never saw whole: each window's
        # causal NLL from the trainer's own loss (ar_nll_sum_windows, cross-entropy of one window).
        if name == "ar":
            independent = sum(ar_nll_sum_windows(model, windows[i : i + 1], 1, torch.device("cpu"))
                              for i in range(len(windows)))
            assert r["bpb"] == pytest.approx(independent / (math.log(2) * bytes_expected), rel=1e-6)
    assert res["decoders"]["ar"]["parts"]["pass2"]["tokens"] == 0
    assert res["decoders"]["cf_valid"]["parts"]["pass1"]["tokens"] == 6 * 8  # skeleton, stride 2
    # All CF decoders share pass 2 (same rounds, same fills).
    cf_pass2 = {res["decoders"][n]["parts"]["pass2"]["nll_sum"] for n in ("cf_published", "cf_valid")}
    assert len(cf_pass2) == 1
    # Random windows are not the trainer's, so eval_cf makes no consistency check here (the ar
    # comparison above, against per-window cross-entropy, is this mode's independent check); it
    # says so rather than printing a PASS that a forward compared with itself would always earn.
    assert res["consistency"] == {"run": False, "reason": eval_cf.NOT_RUN_RANDOM, "passed": None}
    assert f"consistency: {eval_cf.NOT_RUN_RANDOM}" in stdout and "PASS" not in stdout

    # The published line is labelled wherever it is printed; the valid ones are not.
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.split()
             and line.split()[0] in cf.DECODERS}
    assert "NOT a valid code length" in lines["cf_published"]
    assert "pass 1 conditions on tokens decoded later" in lines["cf_published"]
    assert "NOT a valid code length" not in lines["ar"] + lines["cf_valid"]
    assert "NOT a valid code length" in res["decoders"]["cf_published"]["label"]

    # The per-window file: next to the JSON, named by it, one entry per window in window order.
    assert res["per_window_file"] == "eval.windows.npz"
    with np.load(tmp_path / res["per_window_file"]) as z:
        arrays = {key: z[key] for key in z.files}
    np.testing.assert_array_equal(arrays["offsets"], offsets)
    assert arrays["seed"].shape == () and int(arrays["seed"]) == 42
    np.testing.assert_array_equal(arrays["bytes"], window_bytes)
    expected_keys = {"offsets", "seed", "bytes", "nll_ar"}
    # ar and the chain-rule decoders of the bidirectional pass score every target in one pass.
    one_pass = {"ar", "bidir_l2r", "bidir_confidence"}
    expected_keys |= {f"nll_{n}" for n in cf.DECODERS}
    expected_keys |= {f"nll_{n}{s}" for n in cf.DECODERS if n not in one_pass for s in ("_pass1", "_pass2")}
    assert set(arrays) == expected_keys
    for i in range(len(windows)):  # the causal NLL of each window on its own, from the trainer's loss
        own = ar_nll_sum_windows(model, windows[i : i + 1], 1, torch.device("cpu"))
        assert arrays["nll_ar"][i] == pytest.approx(own, rel=1e-6)
    for name in cf.DECODERS:
        nll = arrays[f"nll_{name}"]
        assert nll.dtype == np.float64 and nll.shape == (6,)
        assert math.fsum(nll) == pytest.approx(res["decoders"][name]["nll_sum"], rel=1e-12)
        if name not in one_pass:
            np.testing.assert_allclose(arrays[f"nll_{name}_pass1"] + arrays[f"nll_{name}_pass2"], nll, rtol=1e-12)
            assert math.fsum(arrays[f"nll_{name}_pass1"]) == pytest.approx(
                res["decoders"][name]["parts"]["pass1"]["nll_sum"], rel=1e-12)
            # Each window scored on its own (batch of one) gives the same per-window NLL: the
            # scores do not depend on which windows share a batch.
            alone = cf.decode_nll(TorchScorer(model, torch.device("cpu")), windows[:1], name,
                                  cf.CFSettings(vocab_size=model.config.vocab_size))
            assert nll[0] == pytest.approx(alone.sum(), rel=1e-6)


@pytest.fixture(scope="module")
def full_val_result(shakespeare_data, tiny_run, tmp_path_factory) -> dict:
    """eval_cf --full_val on the trainer's validation tokens and windows (same seq_len)."""
    run, _ = tiny_run
    out = tmp_path_factory.mktemp("full_val") / "full.json"
    rc = run_eval(shakespeare_data, run / "step_final.pt", out, "--full_val", "--seq_len", str(SEQ_LEN),
                  "--val_tokens", str(VAL_TOKENS), "--batch_size", "16", "--decoders", "ar,cf_valid")
    assert rc == 0
    return json.loads(out.read_text())


def per_token_reference(shakespeare_data, run) -> tuple[float, float]:
    """(float64 sum of the trainer-model's per-token cross-entropies, bytes) on the trainer's windows."""
    model, _ = load_model(run / "step_final.pt", torch.device("cpu"))
    tokens = load_tokens(shakespeare_data, "val", limit=VAL_TOKENS + 1)
    windows = torch.as_tensor(tokens[np.arange(VAL_TOKENS // SEQ_LEN)[:, None] * SEQ_LEN + np.arange(SEQ_LEN + 1)])
    losses = []
    with torch.no_grad():
        for batch in windows.split(16):  # the batches of the trainer (--val_batch_size 16) and of eval_cf
            logits = model(batch[:, :-1], is_causal=True)
            losses.append(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                            batch[:, 1:].reshape(-1), reduction="none"))
    nll = torch.cat(losses)
    n_bytes = load_byte_tables(tokenizer_of(shakespeare_data)).stream_bytes(windows.numpy()).sum()
    return math.fsum(nll.double().tolist()), int(n_bytes)


def test_full_val_ar_equals_trainer_val_bpb(shakespeare_data, tiny_run, full_val_result):
    run, results = tiny_run
    res = full_val_result
    assert res["windows"]["count"] == VAL_TOKENS // SEQ_LEN
    assert res["windows"]["offsets"] == [k * SEQ_LEN for k in range(VAL_TOKENS // SEQ_LEN)]
    ar = res["decoders"]["ar"]
    assert ar["tokens"] == results["val_tokens"] and ar["bytes"] == results["val_bytes"]
    assert res["decoders"]["cf_valid"]["windows_sha256"] == ar["windows_sha256"]
    # Bit for bit the trainer's per-token losses on the trainer's windows, summed in float64.
    nll, n_bytes = per_token_reference(shakespeare_data, run)
    assert n_bytes == ar["bytes"]
    assert ar["nll_sum"] == pytest.approx(nll, rel=1e-12)
    # The trainer's own val_bpb (results.json, its last evaluation) and ar_val_bpb recomputed: equal up
    # to ar_nll_sum's float32 per-batch sums (cross_entropy reduction="sum"), about 1e-8 relative.
    assert ar["bpb"] == pytest.approx(results["final_val_bpb"], rel=1e-6)
    reference = ar_val_bpb(load_model(run / "step_final.pt", torch.device("cpu"))[0],
                           load_tokens(shakespeare_data, "val", limit=VAL_TOKENS + 1), SEQ_LEN, 16,
                           torch.device("cpu"), load_byte_tables(tokenizer_of(shakespeare_data)))
    assert ar["bpb"] == pytest.approx(reference["val_bpb"], rel=1e-6)
    assert res["consistency"]["passed"] and res["consistency"]["rel_diff"] < 1e-6


def test_full_val_ar_equals_trainer_val_bpb_to_1e9(tiny_run, full_val_result):
    _, results = tiny_run
    res = full_val_result
    assert res["decoders"]["ar"]["bpb"] == pytest.approx(results["final_val_bpb"], rel=1e-9)


def test_random_windows_depend_on_seed_only(shakespeare_data, tiny_run, tmp_path):
    run, _ = tiny_run
    offsets = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / f"{name}.json"
        assert run_eval(shakespeare_data, run / "final_model.npz", out, "--n_seqs", "5", "--seq_len", "8",
                        "--decoders", "ar", "--seed", seed, "--batch_size", "2") == 0
        offsets.append(json.loads(out.read_text())["windows"]["offsets"])
    assert offsets[0] == offsets[1] != offsets[2]


def test_default_json_lands_next_to_the_checkpoint(shakespeare_data, tiny_run):
    run, _ = tiny_run
    rc = eval_cf.main(["--checkpoint", str(run / "final_model.npz"), "--data_dir", str(shakespeare_data),
                       "--n_seqs", "2", "--seq_len", "8", "--decoders", "ar", "--device", "cpu"])
    assert rc == 0 and (run / "final_model.eval_cf.json").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--stride", "1"], "--stride must be >= 2"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--n_random", "0"], "--n_random must be >= 1"),
    (["--decoders", "ar,nope"], "unknown"),
    (["--seq_len", "10000000"], "do not fit"),
    (["--full_val", "--val_tokens", "20", "--seq_len", "32"], "do not fit"),
])
def test_bad_flags_give_one_error_line(shakespeare_data, tiny_run, tmp_path, capsys, extra, message):
    run, _ = tiny_run
    out = tmp_path / "never.json"
    rc = run_eval(shakespeare_data, run / "final_model.npz", out, "--n_seqs", "2", "--seq_len", "8", *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["missing", "truncated_npz", "truncated_pt"])
def test_bad_checkpoint_gives_one_error_line(shakespeare_data, tiny_run, tmp_path, capsys, kind):
    run, _ = tiny_run
    if kind == "missing":
        checkpoint = tmp_path / "nope.npz"
    else:
        source = run / ("final_model.npz" if kind == "truncated_npz" else "step_final.pt")
        checkpoint = tmp_path / source.name
        raw = source.read_bytes()
        checkpoint.write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "never.json"
    rc = run_eval(shakespeare_data, checkpoint, out, "--n_seqs", "2", "--seq_len", "8")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and err[0].startswith("error:") and str(checkpoint) in err[0], err
    assert not out.exists()
    assert not list(tmp_path.glob("*.json"))


def test_fill_mixture_shares_forwards_and_is_the_mixture_per_window():
    # score_decoders with a toy scorer: the mixture decoders add no model call, and each
    # window's nll_<mix> is -log mean_f exp(-NLL_f) of the one-fill codes (computed here apart).
    from scipy.special import logsumexp

    from meadow_golf.eval.toy_scorers import MixingScorer

    V, T, F, seed = 6, 12, 3, 5
    windows = np.random.default_rng(0).integers(0, V, size=(5, T + 1))
    target_bytes = np.ones((5, T), dtype=np.int64)
    settings = cf.CFSettings(vocab_size=V, stride=2, rounds=2, n_random=F, seed=seed)
    calls = {}
    per_window = {}
    for names in (["ar", "cf_valid", "cf_bidir_skeleton"],
                  ["ar", "cf_valid", "cf_valid_mix", "cf_bidir_skeleton", "cf_bidir_skeleton_mix"]):
        inner = MixingScorer(V, seed=1)
        count = {"n": 0}

        def scorer(inputs, is_causal, targets, inner=inner, count=count):
            count["n"] += 1
            return inner(inputs, is_causal, targets)

        per_window = {}
        result = eval_cf.score_decoders(scorer, windows, target_bytes, names, batch_size=2, settings=settings,
                                        per_window=per_window)
        calls[len(names)] = count["n"]
    assert calls[5] == calls[3]
    fills = cf.draw_fills(seed, T, 2, F, V)
    for base in ("cf_valid", "cf_bidir_skeleton"):
        fill_nll = np.stack([cf.decode_nll(MixingScorer(V, seed=1), windows, base, settings.replace(n_random=1),
                                           fills=fills[:, f : f + 1]).sum(axis=1) for f in range(F)])
        want = -(logsumexp(-fill_nll, axis=0) - math.log(F))
        np.testing.assert_allclose(per_window[f"nll_{base}_mix"], want, rtol=1e-12)
        assert (per_window[f"nll_{base}_mix"] < per_window[f"nll_{base}"]).all()
        assert result[f"{base}_mix"]["valid_code_length"] and result[f"{base}_mix"]["label"] == ""
        assert result[f"{base}_mix"]["bpb"] == pytest.approx(
            math.fsum(want) / (math.log(2) * target_bytes.sum()), rel=1e-12)
