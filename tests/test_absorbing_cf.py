"""Chain-rule decoders of the bidirectional pass and CF with a mask fill (cf.py, audits.py).

Each valid decoder must pass the order audit (its claimed order, or for bidir_confidence each
window's realized order) and the per-fill normalization audit: every fill realization, as its own
code, sums to exactly 1 over all V^T sequences. With a mask fill there is one realization.
"""

from __future__ import annotations

import numpy as np
import pytest

from meadow_golf.eval import audits
from meadow_golf.eval import cf
from meadow_golf.eval.toy_scorers import MarkovMaskScorer, MixingScorer

V, T = 3, 5
SCORER = MixingScorer(V, dim=6, width=2, seed=1, mask_token=True)
MASK = SCORER.mask_id


def windows(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, V, size=(n, T + 1))


@pytest.mark.parametrize("mask_id,n_random", [(MASK, 1), (None, 2)])
def test_bidir_l2r_passes_both_audits(mask_id, n_random):
    order = audits.order_audit(SCORER, windows(), "bidir_l2r",
                               cf.CFSettings(vocab_size=V, n_random=n_random, mask_id=mask_id))
    assert order["passed"] and order["max_change"] == 0.0
    norm = audits.per_fill_normalization_audit(SCORER, "bidir_l2r",
                                               cf.CFSettings(vocab_size=V, n_random=n_random, mask_id=mask_id), T=T)
    assert norm["passed"], norm["fill_totals"]


@pytest.mark.parametrize("mask_id,n_random", [(MASK, 1), (None, 2)])
def test_bidir_confidence_passes_both_audits(mask_id, n_random):
    order = audits.adaptive_order_audit(SCORER, windows(),
                                        cf.CFSettings(vocab_size=V, n_random=n_random, mask_id=mask_id))
    assert order["passed"] and order["max_change"] == 0.0 and not order["order_moved"]
    norm = audits.per_fill_normalization_audit(SCORER, "bidir_confidence",
                                               cf.CFSettings(vocab_size=V, n_random=n_random, mask_id=mask_id), T=T)
    assert norm["passed"], norm["fill_totals"]


def test_confidence_order_is_adaptive_and_a_permutation():
    x = windows(8)[:, 1:]
    order, logp = cf.confidence_order(SCORER, x, cf.mask_fills(T, 0, MASK)[0, 0])
    assert all(sorted(row) == list(range(T)) for row in order.tolist())
    assert len({tuple(row) for row in order.tolist()}) > 1  # the order depends on the window
    assert np.all(np.isfinite(logp))


def test_leaky_confidence_fails_the_adaptive_audit():
    """A confidence that peeks at the true tokens (here: the log-prob of the true token itself)
    makes the order depend on undecoded tokens; the audit must catch it."""

    class Leaky:
        def __call__(self, inputs, is_causal, targets):
            self.targets = targets
            return SCORER(inputs, is_causal, targets)

        def max_logp(self, inputs, is_causal):
            return SCORER(inputs, is_causal, self.targets)

    result = audits.adaptive_order_audit(Leaky(), windows(), cf.CFSettings(vocab_size=V, n_random=1, mask_id=MASK))
    assert not result["passed"]


@pytest.mark.parametrize("decoder", ["cf_valid", "cf_bidir_skeleton", "cf_valid_mix", "cf_bidir_skeleton_mix"])
def test_cf_with_mask_fill_passes_both_audits(decoder):
    order = audits.order_audit(SCORER, windows(), decoder, cf.CFSettings(vocab_size=V, n_random=1, mask_id=MASK))
    assert order["passed"] and order["max_change"] == 0.0
    norm = audits.per_fill_normalization_audit(SCORER, decoder,
                                               cf.CFSettings(vocab_size=V, n_random=1, mask_id=MASK), T=T)
    assert norm["passed"] and len(norm["fill_totals"]) == 1


def test_cf_published_with_mask_fill_still_fails_the_order_audit():
    assert not audits.order_audit(SCORER, windows(), "cf_published",
                                  cf.CFSettings(vocab_size=V, n_random=1, mask_id=MASK))["passed"]


def test_mask_fill_puts_the_mask_at_every_hidden_position():
    seen = []

    def spy(inputs, is_causal, targets):
        seen.append(np.array(inputs))
        return SCORER(inputs, is_causal, targets)

    seqs = windows(2)
    cf.decode_nll(spy, seqs, "cf_bidir_skeleton", cf.CFSettings(vocab_size=V, n_random=1, mask_id=MASK))
    first = seen[0]  # skeleton token 0: everything hidden
    assert np.all(first == MASK)
    assert all(set(np.unique(s)) <= set(range(V)) | {MASK} for s in seen)


def test_exact_conditionals_chain_rule_is_the_joint():
    """bidir_l2r with a mask fill and the exact conditionals of a Markov chain is -log P(x) exactly."""
    rng = np.random.default_rng(2)
    transition, initial = rng.dirichlet(np.ones(V), size=V), rng.dirichlet(np.ones(V))
    scorer = MarkovMaskScorer(transition, initial, mask_id=V)
    seqs = windows(6)
    x = seqs[:, 1:]
    log_joint = np.log(initial[x[:, 0]]) + np.log(transition[x[:, :-1], x[:, 1:]]).sum(axis=1)
    for decoder in ("bidir_l2r", "bidir_confidence"):
        nll = cf.decode_nll(scorer, seqs, decoder, cf.CFSettings(vocab_size=V, n_random=1, mask_id=V)).sum(axis=1)
        np.testing.assert_allclose(nll, -log_joint, rtol=1e-12)


def test_mask_fill_bad_input_refused():
    with pytest.raises(ValueError, match="n_random must be 1"):
        cf.decode_nll(SCORER, windows(), "cf_valid", cf.CFSettings(vocab_size=V, n_random=3, mask_id=MASK))
    with pytest.raises(ValueError, match="inside the vocabulary"):
        cf.decode_nll(SCORER, windows(), "cf_valid", cf.CFSettings(vocab_size=V, n_random=1, mask_id=1))
    with pytest.raises(ValueError, match="adaptive order"):
        cf.decoding_order("bidir_confidence", T)


@pytest.mark.parametrize("decoder", ["bidir_l2r", "bidir_confidence"])
def test_chain_rule_window_score_does_not_depend_on_batch(decoder):
    seqs = windows(5, seed=3)
    together = cf.decode_nll(SCORER, seqs, decoder, cf.CFSettings(vocab_size=V, n_random=1, mask_id=MASK))
    for b in range(len(seqs)):
        alone = cf.decode_nll(SCORER, seqs[b : b + 1], decoder, cf.CFSettings(vocab_size=V, n_random=1, mask_id=MASK))
        np.testing.assert_allclose(alone[0], together[b], rtol=1e-13, atol=0)
