"""The absorbing-mask ELBO (elbo.py): exact identities on a tiny vocabulary, and the entropy floor.

What the tests prove:
- the estimator's EXPECTATION (its own code, sample_terms, integrated over t exactly by
  Gauss-Legendre quadrature, which is exact for the polynomial integrand, and summed over every
  mask) equals the Beta-weight enumeration exact_nelbo, and both equal the mean over all T! orders
  of the chain-rule code length (computed from scorer calls alone);
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


def estimator_expectation(scorer, x, mask_id):
    """E_t E_M of sample_terms, exactly: every mask M enumerated with its probability t^m (1-t)^(T-m),
    t integrated by Gauss-Legendre on [0, 1] (degree T-1 polynomial after the 1/t: exact)."""
    nodes, weights = np.polynomial.legendre.leggauss(8)
    nodes, weights = (nodes + 1) / 2, weights / 2
    masks = all_sequences(2, x.shape[1]).astype(bool)  # (2^T, T)
    expectation = np.zeros(x.shape[0])
    for t, w in zip(nodes, weights):
        times = np.full((x.shape[0], len(masks)), t)
        terms = elbo.sample_terms(scorer, x, times, np.broadcast_to(masks, (x.shape[0],) + masks.shape), mask_id)
        m = masks.sum(axis=1)
        prob = t**m * (1 - t) ** (x.shape[1] - m)
        expectation += w * terms @ prob
    return expectation


def test_exact_enumeration_equals_estimator_expectation_and_order_mean():
    scorer = MixingScorer(V, dim=4, width=1, seed=3, mask_token=True)
    x = all_sequences(V, T)
    exact = elbo.exact_nelbo(scorer, x, scorer.mask_id)
    np.testing.assert_allclose(estimator_expectation(scorer, x, scorer.mask_id), exact, rtol=1e-12, atol=0)
    orders = list(itertools.permutations(range(T)))
    order_mean = sum(chain_rule_nll(scorer, x, order, scorer.mask_id) for order in orders) / len(orders)
    np.testing.assert_allclose(order_mean, exact, rtol=1e-12, atol=0)
    # A code length in expectation: the Kraft sum of exp(-NELBO) is at most 1 (and strictly below
    # here: this scorer's conditionals are not those of one joint, so the orders disagree).
    kraft = math.fsum(np.exp(-exact))
    assert kraft <= 1.0 + 1e-12
    assert kraft < 0.999


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
    times, masks = elbo.draw_noise(7, 5, 4, 10)
    again_t, again_m = elbo.draw_noise(7, 2, 4, 10, first_window=3)  # a batch draws only its windows
    np.testing.assert_array_equal(times[3:], again_t)
    np.testing.assert_array_equal(masks[3:], again_m)
    k = np.arange(4)
    assert np.all((times > 1 - (k + 1) / 4) & (times <= 1 - k / 4))  # one time per stratum, t > 0


def test_bad_times_refused():
    scorer = MixingScorer(V, mask_token=True)
    with pytest.raises(ValueError, match="mask times"):
        elbo.sample_terms(scorer, np.zeros((1, T), np.int64), np.zeros((1, 1)), np.ones((1, 1, T), bool), V)


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
    times, masks = elbo.draw_noise(0, docs.shape[0], 4, docs.shape[1])
    results = {}
    for name, scorer in (("exact", exact), ("wrong", wrong)):
        terms = elbo.sample_terms(scorer, docs, times, masks, W)
        results[name] = elbo.summarize(terms.mean(axis=1), n_bytes, 4)
    for r in results.values():
        assert r["bpb"] + r["bpb_se"] >= floor
    # The tight case sits on the floor (within 3 standard errors), the wrong chain clearly above.
    assert abs(results["exact"]["bpb"] - floor) <= 3 * results["exact"]["bpb_se"]
    assert results["wrong"]["bpb"] > floor + 3 * results["wrong"]["bpb_se"]
