"""The synthetic source: its exact entropy, its byte accounting and its neighbour coupling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from meadow_golf.data.challenge_format import load_byte_tables, load_tokens
from meadow_golf.data.corpus_synthetic import SOURCE_FILE, build_source, load_source

SEED = 0


@pytest.fixture(scope="module")
def source():
    return build_source(SEED)


def sample_from_matrix(pi: np.ndarray, transition: np.ndarray, rng, n_docs: int, n_words: int) -> np.ndarray:
    """Documents drawn by inverse-CDF sampling from pi and the full matrix P.

    Independent of the generator's own sampler (which draws the leak and the successors as a
    mixture), so agreement checks both the entropy formula and the matrix it is computed from.
    """
    cum_pi = np.cumsum(pi)
    cum_rows = np.cumsum(transition, axis=1)
    ids = np.empty((n_docs, n_words), dtype=np.int64)
    ids[:, 0] = np.minimum(np.searchsorted(cum_pi, rng.random(n_docs), side="right"), pi.size - 1)
    for k in range(1, n_words):
        u = rng.random(n_docs)
        ids[:, k] = np.minimum((cum_rows[ids[:, k - 1]] <= u[:, None]).sum(axis=1), pi.size - 1)
    return ids


def code_length_ratio(bits: np.ndarray, nbytes: np.ndarray) -> tuple[float, float]:
    """Ratio-of-means estimate sum(bits)/sum(bytes) and its delta-method standard error."""
    ratio = bits.sum() / nbytes.sum()
    residual = bits - ratio * nbytes
    se = residual.std(ddof=1) / (nbytes.mean() * np.sqrt(bits.size))
    return float(ratio), float(se)


def test_source_is_a_proper_markov_chain(source):
    matrix, pi = source.transition, source.stationary
    assert (matrix > 0).all()  # the leak: irreducible and aperiodic
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    assert abs(pi.sum() - 1.0) < 1e-14
    assert np.max(np.abs(pi @ matrix - pi)) < 1e-15
    words = source.words
    assert len(set(words)) == len(words) == 400
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)


def test_exact_entropy_matches_an_independent_monte_carlo_estimate(source):
    exact = source.entropy()
    rng = np.random.default_rng(20260409)  # not one of the generator's streams
    ids = sample_from_matrix(source.stationary, source.transition, rng, 12_000, source.words_per_doc)
    bits = -source.log2_probability(ids)
    nbytes = source.word_bytes[ids].sum(axis=1) + source.words_per_doc - 1
    estimate, se = code_length_ratio(bits, nbytes)
    rate = exact["entropy_bits_per_byte"]
    assert se < 0.003 * rate, "the Monte Carlo check would be too loose to mean anything"
    assert abs(estimate - rate) < 4 * se, (estimate, rate, se)
    # The components as well: mean code length per document and mean bytes per document.
    assert abs(bits.mean() - exact["entropy_bits_per_document"]) < 4 * bits.std() / np.sqrt(bits.size)
    assert abs(nbytes.mean() - exact["expected_bytes_per_document"]) < 4 * nbytes.std() / np.sqrt(nbytes.size)


def test_generator_samples_from_the_same_source(source):
    """The generator's own (mixture) sampler has the same code length per byte."""
    ids = source.sample_documents(np.random.default_rng(99), 12_000)
    bits = -source.log2_probability(ids)
    nbytes = source.word_bytes[ids].sum(axis=1) + source.words_per_doc - 1
    estimate, se = code_length_ratio(bits, nbytes)
    assert abs(estimate - source.entropy()["entropy_bits_per_byte"]) < 4 * se


def test_neighbouring_words_are_strongly_coupled(source):
    exact = source.entropy()
    assert exact["per_word_entropy_rate_bits"] < 0.5 * exact["first_word_entropy_bits"]
    # A decoder that also peeks at the NEXT word scores w_k by p(w_k | w_{k-1}, w_{k+1}), which is
    # proportional to P[w_{k-1}, w_k] * P[w_k, w_{k+1}]. Its average falls well below the floor.
    ids = source.sample_documents(np.random.default_rng(5), 200)
    prev, mid, nxt = ids[:, :-2].ravel(), ids[:, 1:-1].ravel(), ids[:, 2:].ravel()
    matrix = source.transition
    joint = matrix[prev] * matrix[:, nxt].T  # (positions, W): every candidate for w_k
    peeking_bits = -np.log2(joint[np.arange(mid.size), mid] / joint.sum(axis=1))
    assert peeking_bits.mean() < 0.5 * exact["per_word_entropy_rate_bits"]


def test_prepared_folder_bytes_and_entropy(synthetic_data):
    meta = json.loads((synthetic_data / "meta.json").read_text())
    seed, val_docs = meta["request"]["seed"], meta["request"]["val_docs"]
    source = load_source(synthetic_data / SOURCE_FILE)
    rebuilt = build_source(seed)
    assert source.words == rebuilt.words
    np.testing.assert_array_equal(source.transition, rebuilt.transition)

    # The validation documents are the generator's [seed, 2] stream; their text's UTF-8 length is
    # exactly the METHOD.md §2 byte count of the validation shard.
    val_ids = source.sample_documents(np.random.default_rng([seed, 2]), val_docs)
    text_bytes = sum(len(t.encode("utf-8")) for t in source.render(val_ids))
    tables = load_byte_tables(synthetic_data / meta["tokenizer"])
    assert int(tables.stream_bytes(load_tokens(synthetic_data, "val")).sum()) == text_bytes == meta["val_bytes"]

    assert meta["entropy_bits_per_byte"] == pytest.approx(source.entropy()["entropy_bits_per_byte"], rel=1e-12)
    exact_sum = -source.log2_probability(val_ids).sum()
    assert meta["val_entropy_bits_exact_sum"] == pytest.approx(exact_sum, rel=1e-12)
    assert meta["val_entropy_bits_per_byte_sample"] == pytest.approx(exact_sum / text_bytes, rel=1e-12)
    # The sample's code length per byte is close to the rate (250 documents: a few percent).
    assert abs(meta["val_entropy_bits_per_byte_sample"] / meta["entropy_bits_per_byte"] - 1) < 0.05
    for key in ("words_per_document", "per_word_entropy_rate_bits", "first_word_entropy_bits", "mean_bytes_per_word"):
        assert key in meta["entropy"]
    assert meta["train_documents"] == meta["request"]["train_docs"] and meta["val_documents"] == val_docs
