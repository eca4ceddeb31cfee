"""The absorbing-mask ELBO (elbo.py): exact identities on a tiny vocabulary, and the entropy floor.

What the tests prove:
- the estimator's EXPECTATION (its own code, sample_terms, summed over every mask with the
  probability draw_noise gives it) equals the Beta-weight enumeration exact_nelbo, and both equal
  the mean over all T! orders of the chain-rule code length (computed from scorer calls alone);
- draw_noise draws each mask with that probability (frequencies over many windows), one sample's
  variance is finite (exact second moment by enumeration, matched by the sample variance; every
  term within [T min l, T max l]), and the reported standard error is calibrated: repeated
  estimates on a toy source fall within 2 se of the exact expected NELBO about 95% of the time;
- that mean over orders makes exp(-NELBO) sum to at most 1 over all V^T sequences (a code length
  in expectation) for an arbitrary normalized scorer, and exactly -log P(x) for exact conditionals;
- on the synthetic source (a Markov chain over words with a known entropy), the Monte Carlo
  estimate with its standard error stays at or above the entropy floor.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from meadow_golf.eval import elbo
from meadow_golf.eval.audits import all_sequences
from meadow_golf.eval.toy_scorers import MarkovMaskScorer, MixingScorer

V, T = 3, 3


def chain_rule_nll(scorer, x, order, mask_id):
    """-log prod_k p(x_order[k] | x_order[<k]) with the rest masked, by direct scorer calls."""
    total = np.zeros(x.shape[0])
    visible = np.zeros(x.shape[1], dtype=bool)
    for position in order:
        inputs = np.where(visible[None, :], x, mask_id)
        total -= scorer(inputs, False, x)[:, position]
        visible[position] = True
    return total


def every_mask(T):
    """All 2^T - 1 non-empty masks (M, T) and the probability draw_noise gives each."""
    masks = all_sequences(2, T).astype(bool)[1:]
    prob = np.array([elbo.mask_probability(T, int(m)) for m in masks.sum(axis=1)])
    return masks, prob


def estimator_moments(scorer, x, mask_id):
    """E and E[term^2] of ONE sample of sample_terms, exactly: every mask with its probability."""
    masks, prob = every_mask(x.shape[1])
    terms = elbo.sample_terms(scorer, x, np.broadcast_to(masks, (x.shape[0],) + masks.shape), mask_id)
    return terms @ prob, (terms**2) @ prob


def test_exact_enumeration_equals_estimator_expectation_and_order_mean():
    scorer = MixingScorer(V, dim=4, width=1, seed=3, mask_token=True)
    x = all_sequences(V, T)
    exact = elbo.exact_nelbo(scorer, x, scorer.mask_id)
    assert math.fsum(every_mask(T)[1]) == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(estimator_moments(scorer, x, scorer.mask_id)[0], exact, rtol=1e-12, atol=0)
    orders = list(itertools.permutations(range(T)))
    order_mean = sum(chain_rule_nll(scorer, x, order, scorer.mask_id) for order in orders) / len(orders)
    np.testing.assert_allclose(order_mean, exact, rtol=1e-12, atol=0)
    # A code length in expectation: the Kraft sum of exp(-NELBO) is at most 1 (and strictly below
    # here: this scorer's conditionals are not those of one joint, so the orders disagree).
    kraft = math.fsum(np.exp(-exact))
    assert kraft <= 1.0 + 1e-12
    assert kraft < 0.999


def test_draw_noise_draws_each_mask_with_its_probability():
    """Mask frequencies over 20,000 windows x 2 strata match mask_probability (chi-square-like bound)."""
    T4 = 4
    masks = elbo.draw_noise(5, 20_000, 2, T4).reshape(-1, T4)
    codes = masks.astype(np.int64) @ (1 << np.arange(T4))
    counts = np.bincount(codes, minlength=2**T4)
    assert counts[0] == 0  # m >= 1 always
    expected = np.array([0.0] + [elbo.mask_probability(T4, bin(c).count("1")) for c in range(1, 2**T4)])
    freq = counts / counts.sum()
    sd = np.sqrt(expected * (1 - expected) / counts.sum())
    assert np.all(np.abs(freq - expected)[1:] < 5 * sd[1:])


def test_one_sample_has_finite_variance_matched_by_its_draws():
    """The exact variance of one term (enumeration) is finite and the draws show it; every term lies
    in [T min l, T max l], so no sample can be hundreds of times the mean."""
    scorer = MixingScorer(V, dim=4, width=1, seed=3, mask_token=True)
    x = all_sequences(V, T)[[5, 17]]
    mean, second = estimator_moments(scorer, x, scorer.mask_id)
    variance = second - mean**2
    assert np.all(np.isfinite(variance)) and np.all(variance > 0)
    n = 40_000
    masks = elbo.draw_noise(11, n, 1, T)
    for row in range(x.shape[0]):
        terms = elbo.sample_terms(scorer, np.repeat(x[row : row + 1], n, axis=0), masks, scorer.mask_id)[:, 0]
        # The sample mean within 4 standard errors, the sample variance within 10% (n = 40,000).
        assert abs(terms.mean() - mean[row]) < 4 * math.sqrt(variance[row] / n)
        assert terms.var(ddof=1) == pytest.approx(variance[row], rel=0.1)
    masks_all, _ = every_mask(T)
    for row in range(x.shape[0]):
        inputs = np.where(masks_all, scorer.mask_id, x[row])
        loss = -scorer(inputs, False, np.broadcast_to(x[row], inputs.shape))  # (masks, T) nats
        terms = elbo.sample_terms(scorer, x[row : row + 1], masks_all[None], scorer.mask_id)[0]
        masked = np.where(masks_all, loss, np.nan)
        assert np.all(terms >= T * np.nanmin(masked, axis=1) - 1e-12)
        assert np.all(terms <= T * np.nanmax(masked, axis=1) + 1e-12)


def test_standard_error_is_calibrated_on_a_toy_source():
    """1,000 repeated estimates, each on 40 windows drawn from a Markov source (V=3, T=3) with 2
    samples per window: the exact expected NELBO (enumeration over every sequence and mask) lies
    within +-2 reported standard errors of about 95% of them."""
    rng = np.random.default_rng(0)
    transition, initial = rng.dirichlet(np.ones(V), size=V), rng.dirichlet(np.ones(V))
    scorer = MixingScorer(V, dim=4, width=1, seed=3, mask_token=True)  # not the source's conditionals
    x_all = all_sequences(V, T)
    p_x = initial[x_all[:, 0]] * np.prod(transition[x_all[:, :-1], x_all[:, 1:]], axis=1)
    truth = float(p_x @ elbo.exact_nelbo(scorer, x_all, scorer.mask_id))  # nats per window
    R, N, K = 1000, 40, 2
    windows = x_all[rng.choice(len(x_all), size=R * N, p=p_x)]
    terms = elbo.sample_terms(scorer, windows, elbo.draw_noise(3, R * N, K, T), scorer.mask_id)
    means = terms.mean(axis=1).reshape(R, N)
    covered = 0
    for r in range(R):
        s = elbo.summarize(means[r], total_bytes=N, n_samples=K)  # bytes only scale bpb; nats compared
        covered += abs(s["nll_sum"] / N - truth) <= 2 * s["nll_sum_se"] / N
    assert 0.92 <= covered / R <= 0.98, covered / R


def test_exact_conditionals_make_the_bound_tight():
    rng = np.random.default_rng(0)
    transition, initial = rng.dirichlet(np.ones(V), size=V), rng.dirichlet(np.ones(V))
    scorer = MarkovMaskScorer(transition, initial, mask_id=V)
    x = all_sequences(V, T)
    log_joint = np.log(initial[x[:, 0]]) + np.log(transition[x[:, :-1], x[:, 1:]]).sum(axis=1)
    exact = elbo.exact_nelbo(scorer, x, V)
    np.testing.assert_allclose(exact, -log_joint, rtol=1e-12)
    assert math.fsum(np.exp(-exact)) == pytest.approx(1.0, abs=1e-12)


def test_noise_stream_is_per_window_and_stratified():
    masks = elbo.draw_noise(7, 5, 4, 10)
    again = elbo.draw_noise(7, 2, 4, 10, first_window=3)  # a batch draws only its windows
    np.testing.assert_array_equal(masks[3:], again)
    sizes = masks.sum(axis=2)
    k = np.arange(4)
    # One size per stratum: m - 1 = floor(T (k + u) / K) lies in [T k / K, T (k + 1) / K).
    assert np.all((sizes - 1 >= np.floor(10 * k / 4)) & (sizes - 1 < 10 * (k + 1) / 4)) and np.all(sizes >= 1)


def test_empty_masks_refused():
    scorer = MixingScorer(V, mask_token=True)
    with pytest.raises(ValueError, match="at least one position"):
        elbo.sample_terms(scorer, np.zeros((1, T), np.int64), np.zeros((1, 1, T), bool), V)


def test_synthetic_source_estimate_stays_above_entropy_floor():
    """The word-level synthetic source: the exact posterior scorer is the tight case (its NELBO
    is -log P(x) in expectation over masks), a wrong chain costs more; neither falls below the
    floor by more than its standard error."""
    from meadow_golf.data.corpus_synthetic import build_source

    source = build_source(0, word_count=40, words_per_doc=16)
    floor = source.entropy()["entropy_bits_per_byte"]
    docs = source.sample_documents(np.random.default_rng(1), 300)
    n_bytes = int(source.word_bytes[docs].sum() + docs.shape[0] * (docs.shape[1] - 1))
    W = source.word_count
    exact = MarkovMaskScorer(source.transition, source.stationary, mask_id=W)
    wrong = MarkovMaskScorer(0.5 * source.transition + 0.5 / W, source.stationary, mask_id=W)
    masks = elbo.draw_noise(0, docs.shape[0], 4, docs.shape[1])
    results = {}
    for name, scorer in (("exact", exact), ("wrong", wrong)):
        terms = elbo.sample_terms(scorer, docs, masks, W)
        results[name] = elbo.summarize(terms.mean(axis=1), n_bytes, 4)
    for r in results.values():
        # se counts the sampling of the 300 documents too (their own -log P is 0.2310 bits per byte
        # here, below the 0.2394 floor by chance): 3 se, not 1, is the line a valid code keeps.
        assert r["bpb"] + 3 * r["bpb_se"] >= floor
    # The tight case estimates the documents' own -log P(x) (an independent computation).
    log_p = np.log(source.stationary[docs[:, 0]]) + np.log(source.transition[docs[:, :-1], docs[:, 1:]]).sum(axis=1)
    assert abs(results["exact"]["bpb"] - (-log_p.sum() / math.log(2) / n_bytes)) <= 3 * results["exact"]["bpb_se"]
    # The tight case sits on the floor (within 3 standard errors), the wrong chain clearly above.
    assert abs(results["exact"]["bpb"] - floor) <= 3 * results["exact"]["bpb_se"]
    assert results["wrong"]["bpb"] > floor + 3 * results["wrong"]["bpb_se"]
