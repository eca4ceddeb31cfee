"""gen_test.py: greedy mask-predict span fill (rounds, commits, exact match) and causal
sampling decoded to text."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sentencepiece as spm
import torch

from meadow_golf.eval import generate as gen_test
from meadow_golf.eval.backends import load_backend

SPANS, ROUNDS, N_WINDOWS = [1, 3, 8], [1, 2, 4], 5


@pytest.fixture(scope="module")
def trained_checkpoint(tiny_run):
    return tiny_run[0] / "final_model.npz"


def run_gen(data_dir, checkpoint, json_out, *extra):
    return gen_test.main(["--checkpoint", str(checkpoint), "--data_dir", str(data_dir), "--json_out", str(json_out),
                          "--device", "cpu", "--n_windows", str(N_WINDOWS), "--seq_len", "24",
                          "--spans", ",".join(map(str, SPANS)), "--rounds", ",".join(map(str, ROUNDS)),
                          "--batch_size", "2", "--max_new_tokens", "6", *extra])


class OracleModel(torch.nn.Module):
    """Bidirectional logits that point at the true token of each position whatever the input,
    with a confidence that grows along the window (so the commit order is known)."""

    def __init__(self, truth: np.ndarray, vocab: int):
        super().__init__()
        self.truth, self.vocab, self.calls = torch.as_tensor(truth), vocab, 0

    def forward(self, idx, is_causal=True):
        self.calls += 1
        B, T = idx.shape
        logits = torch.zeros(B, T, self.vocab)
        logits.scatter_(2, self.truth[:, :T, None], torch.arange(1.0, T + 1).expand(B, T)[..., None])
        return logits


def test_fill_spans_commits_the_right_amount_each_round():
    truth = np.random.default_rng(0).integers(0, 10, size=(3, 12))
    noise = np.random.default_rng(1).integers(0, 10, size=(3, 5))
    starts = np.array([0, 4, 7])
    for rounds, expected_commits, expected_forwards in ((1, [15], 1), (2, [9, 6], 2), (4, [6, 3, 3, 3], 4),
                                                        (8, [3, 3, 0, 3, 3, 0, 3, 0], 5)):
        model = OracleModel(truth, 10)
        fills, commits, forwards = gen_test.fill_spans(model, load_backend("torch", "cpu"), truth, starts, noise, rounds, 10)
        np.testing.assert_array_equal(fills, truth[np.arange(3)[:, None], starts[:, None] + np.arange(5)])
        assert commits == expected_commits and forwards == expected_forwards == model.calls


def test_span_fill_and_sampling(shakespeare_data, trained_checkpoint, tmp_path, capsys):
    out = tmp_path / "gen.json"
    rc = run_gen(shakespeare_data, trained_checkpoint, out, "--temperature", "0.8", "--n_samples", "2",
                 "--prompt", "KING:", "--n_examples", str(N_WINDOWS))
    stdout = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out.read_text())
    configs = res["fill"]["configs"]
    assert [(c["span"], c["rounds"]) for c in configs] == [(L, R) for L in SPANS for R in ROUNDS]
    for c in configs:
        # Every window is kept as an example (--n_examples N_WINDOWS): the exact-match rates
        # recomputed here from the token lists of the truth and the fill.
        mine = [ex for ex in res["fill"]["examples"] if (ex["span"], ex["rounds"]) == (c["span"], c["rounds"])]
        assert sorted(ex["window"] for ex in mine) == list(range(N_WINDOWS))
        hits = [t == f for ex in mine for t, f in zip(ex["truth_ids"], ex["fill_ids"], strict=True)]
        assert c["exact_match_token"] == pytest.approx(sum(hits) / len(hits), abs=1e-12)
        assert c["exact_match_span"] == pytest.approx(
            sum(ex["truth_ids"] == ex["fill_ids"] for ex in mine) / N_WINDOWS, abs=1e-12)
        assert len(c["commits_per_round"]) == c["rounds"]  # rounds respected
        assert sum(c["commits_per_round"]) == N_WINDOWS * c["span"] == c["n_tokens"]
        assert c["forwards_per_batch"] == min(c["span"], c["rounds"])
    for ex in res["fill"]["examples"]:
        # Its exact flag agrees with its own token lists.
        assert ex["exact"] == (ex["truth_ids"] == ex["fill_ids"])
        assert len(ex["fill_ids"]) == len(ex["truth_ids"]) == ex["span"]

    sp = spm.SentencePieceProcessor()
    sp.load(res["tokenizer"])
    sample = res["sample"]
    assert sample["prompt_ids"][0] == 1 and sample["prompt_ids"][1:] == sp.encode("KING:")
    assert len(sample["samples"]) == 2
    for s in sample["samples"]:
        assert len(s["ids"]) == 6 and max(s["ids"]) < sp.get_piece_size()
        assert s["text"] == sp.decode(s["ids"]) and s["full_text"].startswith("KING:")
    assert "truth:" in stdout and "fill:" in stdout and "sample 0:" in stdout


def test_greedy_and_seeded_sampling_are_reproducible(shakespeare_data, trained_checkpoint, tmp_path, capsys):
    greedy = []
    for name, extra in (("g", ["--n_samples", "2"]), ("s1", ["--temperature", "1.0", "--seed", "3"]),
                        ("s2", ["--temperature", "1.0", "--seed", "3"])):
        assert run_gen(shakespeare_data, trained_checkpoint, tmp_path / f"{name}.json", "--spans", "2",
                       "--rounds", "1", *extra) == 0
        greedy.append(json.loads((tmp_path / f"{name}.json").read_text()))
    capsys.readouterr()
    g = greedy[0]["sample"]["samples"]
    assert g[0]["ids"] == g[1]["ids"]  # greedy: every sample the same
    assert greedy[1]["sample"]["samples"] == greedy[2]["sample"]["samples"]
    for config in greedy[1]["fill"]["configs"] + greedy[2]["fill"]["configs"]:
        config.pop("seconds")  # wall-clock, the only field allowed to differ
    assert greedy[1]["fill"] == greedy[2]["fill"]


@pytest.mark.parametrize("extra, message", [
    (["--spans", "0"], "--spans"),
    (["--spans", "30"], "--spans"),
    (["--rounds", "0"], "--rounds"),
    (["--rounds", "x"], "comma-separated integers"),
    (["--temperature", "-1"], "--temperature"),
])
def test_bad_flags_give_one_error_line(shakespeare_data, trained_checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "never.json"
    rc = run_gen(shakespeare_data, trained_checkpoint, out, *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == gen_test.EXIT_BAD_INPUT and len(err) == 1 and err[0].startswith("error:"), err
    assert message in err[0]
    assert not out.exists()
