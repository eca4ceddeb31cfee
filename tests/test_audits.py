"""Tests of the order and normalization audits (audits.py) and of the toy scorers they use."""

import numpy as np
import pytest

from meadow_golf.eval import audits
from meadow_golf.eval import cf
from meadow_golf.eval.toy_scorers import MarkovScorer, MixingScorer, UniformScorer, UnigramScorer

# bidir_confidence decodes in an adaptive order (one per window) and needs a scorer's confidence:
# audits.adaptive_order_audit and tests/test_absorbing_cf.py check it.
VALID_DECODERS = [name for name, valid in cf.VALID.items() if valid and name != "bidir_confidence"]


def coupled_markov(V=3):
    return MarkovScorer.sticky(V, stay=0.8, seed=1)


class PeekingCausalScorer:
    """A broken backend: causal row i also reads inputs[i + lookahead] (a leaky causal mask).

    Still normalized per row: P(t) = P[inputs[i + lookahead], t] where that exists.
    """

    def __init__(self, inner: MarkovScorer, lookahead: int):
        self.inner, self.lookahead = inner, lookahead

    def __call__(self, inputs, is_causal, targets):
        if not is_causal:
            return self.inner(inputs, is_causal, targets)
        inputs = np.array(inputs)
        k = self.lookahead
        inputs[:, :-k] = inputs[:, k:]
        return self.inner(inputs, True, targets)


# ----------------------------------------------------------------------------- toy scorers


@pytest.mark.parametrize("scorer", [coupled_markov(4), MixingScorer(4), UnigramScorer([1, 2, 3, 4]),
                                    UniformScorer(4)], ids=type)
@pytest.mark.parametrize("is_causal", [True, False])
def test_toy_scorers_are_normalized(scorer, is_causal):
    # Summing exp(log-prob) over every target value at a fixed input gives 1 on every row.
    inputs = np.random.default_rng(0).integers(0, 4, size=(3, 6))
    total = sum(np.exp(scorer(inputs, is_causal, np.full((3, 6), t))) for t in range(4))
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


def test_markov_bidirectional_is_exact_posterior():
    P = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.25, 0.25, 0.5]])
    scorer = MarkovScorer(P)
    inputs = np.array([[2, 0, 1]])
    logp = scorer(inputs, False, np.array([[1, 1, 1]]))[0]
    # Middle: P[2,1] P[1,1] / sum_u P[2,u] P[u,1]; first: uniform prior times P[1, 0];
    # last: P[0, 1] (no right neighbour).
    middle = P[2, 1] * P[1, 1] / sum(P[2, u] * P[u, 1] for u in range(3))
    first = P[1, 0] / P[:, 0].sum()
    np.testing.assert_allclose(np.exp(logp), [first, middle, P[0, 1]], rtol=1e-12)


# ----------------------------------------------------------------------------- order audit


@pytest.mark.parametrize("decoder", VALID_DECODERS)
@pytest.mark.parametrize("scorer", [coupled_markov(), MixingScorer(3, seed=4)], ids=type)
@pytest.mark.parametrize("stride,rounds", [(2, 2), (3, 2), (2, 3)])
def test_order_audit_passes_valid_decoders(decoder, scorer, stride, rounds):
    seqs = np.random.default_rng(1).integers(0, 3, size=(3, 12))
    report = audits.order_audit(scorer, seqs, decoder,
                                cf.CFSettings(vocab_size=3, stride=stride, rounds=rounds, n_random=2), n_trials=2)
    assert report["passed"] and report["max_change"] == 0.0 and report["worst"] is None
    assert report["n_stages"] == len(cf.decoding_order(decoder, 11, stride, rounds))


def test_order_audit_catches_cf_published():
    seqs = np.random.default_rng(2).integers(0, 3, size=(3, 10))
    report = audits.order_audit(coupled_markov(), seqs, "cf_published", cf.CFSettings(vocab_size=3))
    assert not report["passed"]
    assert report["max_change"] > 1.0  # the sticky chain makes the leak large
    # The culprit: a skeleton score (even position) changes when a later gap changes.
    assert report["worst"]["position"] % 2 == 0
    assert report["kind_max_change"]["later"] > 1.0
    # Where no token reads another, the published schedule has nothing to leak.
    unigram = audits.order_audit(UnigramScorer([3, 1, 2]), seqs, "cf_published", cf.CFSettings(vocab_size=3))
    assert unigram["passed"] and unigram["max_change"] == 0.0


@pytest.mark.parametrize("lookahead,kind", [(1, "self"), (2, "later")])
def test_order_audit_catches_leaky_backend(lookahead, kind):
    # Lookahead 1: causal row i reads x[i], its own target (only the "self" check can see it);
    # lookahead 2: it reads x[i+1], a later token.
    seqs = np.random.default_rng(3).integers(0, 3, size=(2, 9))
    scorer = PeekingCausalScorer(coupled_markov(), lookahead)
    report = audits.order_audit(scorer, seqs, "ar", cf.CFSettings(vocab_size=3))
    assert not report["passed"] and report["worst"]["kind"] == kind
    if kind == "self":  # changing strictly later tokens alone cannot reveal it
        assert report["kind_max_change"]["later"] == 0.0
    assert audits.normalization_audit(scorer, "ar", cf.CFSettings(vocab_size=3), T=4)["total_prob"] > 1.5


def _rounds_without_self_hiding(scorer, prev, x, schedule, fills, nll):
    """A deliberately leaky decoder: cf_valid, but each round hides only LATER rounds, so a gap
    is scored with its own true token (and its round-mates) in the bidirectional input."""
    cf._cf_valid(scorer, prev, x, schedule, fills, nll)
    for k, positions in enumerate(schedule.round_positions):
        hidden = np.sort(np.concatenate(schedule.round_positions[k + 1 :] + (np.zeros(0, int),)))
        logp = scorer(cf._with_fill(x, hidden, fills[1 + k, 0]), False, x)
        nll[:, positions] = -logp[:, positions]
    return np.arange(schedule.T) % schedule.stride == 0


def test_order_audit_catches_leaky_decoder(monkeypatch):
    leaky = cf.Decoder("cf_leaky", "rounds see themselves", True, _rounds_without_self_hiding, cf._order_cf)
    monkeypatch.setitem(cf.DECODERS, "cf_leaky", leaky)
    monkeypatch.setitem(cf.VALID, "cf_leaky", True)
    scorer = MixingScorer(3, seed=0)  # its bidirectional rows read their own position
    seqs = np.random.default_rng(4).integers(0, 3, size=(2, 10))
    report = audits.order_audit(scorer, seqs, "cf_leaky", cf.CFSettings(vocab_size=3, n_random=1))
    assert not report["passed"] and report["worst"]["kind"] == "self"
    assert report["kind_max_change"]["later"] == 0.0
    norm = audits.normalization_audit(scorer, "cf_leaky", cf.CFSettings(vocab_size=3, n_random=1), T=4)
    assert norm["total_prob"] > 1.1


def test_order_audit_reports_tolerance():
    seqs = np.random.default_rng(2).integers(0, 3, size=(2, 8))
    report = audits.order_audit(coupled_markov(), seqs, "cf_published", cf.CFSettings(vocab_size=3), tolerance=1e9)
    assert report["passed"] and report["max_change"] > 1.0  # passes only by the tolerance
    small = audits.order_audit(coupled_markov(), seqs, "cf_valid", cf.CFSettings(vocab_size=3), max_rows=3)
    assert small["passed"] and small["max_change"] == 0.0  # chunked decoding changes nothing


# ----------------------------------------------------------------------------- normalization audit
# The math (cf.py): with n_random = 1 a valid decoder is a product of normalized conditionals in
# one fixed order, so its probabilities sum to exactly 1 over all sequences. With n_random > 1
# each probability is a geometric mean over fills of normalized distributions, so by AM-GM the
# sum is <= 1. cf_published reads later-decoded tokens in pass 1, so with coupled neighbours
# its "probabilities" sum to more than 1: not a code length.


@pytest.mark.parametrize("decoder", VALID_DECODERS)
@pytest.mark.parametrize("T", [4, 5])
@pytest.mark.parametrize("scorer", [coupled_markov(), MixingScorer(3, seed=6)], ids=type)
def test_valid_decoders_sum_to_one_with_one_fill(decoder, T, scorer):
    report = audits.normalization_audit(scorer, decoder, cf.CFSettings(vocab_size=3, n_random=1, seed=42), T=T)
    assert report["n_sequences"] == 3**T
    assert abs(report["total_prob"] - 1.0) <= 1e-9


@pytest.mark.parametrize("decoder", VALID_DECODERS)
@pytest.mark.parametrize("stride,rounds", [(2, 2), (3, 2), (2, 3)])
def test_valid_decoders_sum_at_most_one_with_fills(decoder, stride, rounds):
    for scorer in (coupled_markov(), MixingScorer(3, seed=6)):
        settings = cf.CFSettings(vocab_size=3, stride=stride, rounds=rounds, n_random=3, seed=42)
        report = audits.normalization_audit(scorer, decoder, settings, T=5)
        assert report["total_prob"] <= 1.0 + 1e-9


def test_cf_published_is_not_normalized():
    for T in (4, 5):
        report = audits.normalization_audit(coupled_markov(), "cf_published",
                                            cf.CFSettings(vocab_size=3, n_random=1), T=T)
        assert report["total_prob"] > 1.5  # measured 1.63 (T=4) and 2.61 (T=5)
    # Without coupling between tokens the published schedule is a valid code.
    unigram = audits.normalization_audit(UnigramScorer([1, 2, 3]), "cf_published", cf.CFSettings(vocab_size=3), T=5)
    assert abs(unigram["total_prob"] - 1.0) <= 1e-9


def test_normalization_audit_batches_and_context():
    scorer = coupled_markov()
    one = audits.normalization_audit(scorer, "cf_valid", cf.CFSettings(vocab_size=3, n_random=3), T=5, batch_rows=7)
    many = audits.normalization_audit(scorer, "cf_valid", cf.CFSettings(vocab_size=3, n_random=3), T=5)
    assert one["total_prob"] == pytest.approx(many["total_prob"], rel=1e-12)
    ctx = audits.normalization_audit(scorer, "ar", cf.CFSettings(vocab_size=3), T=4, context_token=2)
    assert abs(ctx["total_prob"] - 1.0) <= 1e-9
    with pytest.raises(ValueError, match="max_sequences"):
        audits.normalization_audit(scorer, "ar", cf.CFSettings(vocab_size=3), T=20)
    with pytest.raises(ValueError, match="context_token"):
        audits.normalization_audit(scorer, "ar", cf.CFSettings(vocab_size=3), T=3, context_token=3)


def test_all_sequences_enumerates_every_sequence_once():
    seqs = audits.all_sequences(3, 4)
    assert seqs.shape == (81, 4)
    assert len({tuple(row) for row in seqs.tolist()}) == 81
    assert seqs[0].tolist() == [0, 0, 0, 0] and seqs[-1].tolist() == [2, 2, 2, 2]


# ----------------------------------------------------------------------------- prefix_change


def test_prefix_change():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 6, 5))
    b = a.copy()
    b[:, 4:] += 0.25
    assert audits.prefix_change(a, b, split=4) == (0.0, pytest.approx(0.25))
    b[1, 2, 3] -= 1.0
    assert audits.prefix_change(a, b, split=4) == (pytest.approx(1.0), pytest.approx(0.25))
    # Positions on another axis; an empty side reports 0.
    assert audits.prefix_change(a.transpose(1, 0, 2), b.transpose(1, 0, 2), 4, axis=0)[0] == pytest.approx(1.0)
    assert audits.prefix_change(a, a, split=0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        audits.prefix_change(a, a[:, :5], split=2)


def test_prefix_change_on_toy_causal_forward():
    # Log-probs of every value at every row of the Markov scorer's causal mode: changing inputs
    # from position 5 on leaves rows 0..4 untouched.
    scorer = coupled_markov(4)
    x = np.random.default_rng(5).integers(0, 4, size=(1, 9))
    y = x.copy()
    y[:, 5:] = (y[:, 5:] + 1) % 4

    def all_logp(inputs, is_causal):
        return np.stack([scorer(inputs, is_causal, np.full_like(inputs, t)) for t in range(4)], axis=-1)

    prefix, suffix = audits.prefix_change(all_logp(x, True), all_logp(y, True), split=5)
    assert prefix == 0.0 and suffix > 0.0
    prefix, _ = audits.prefix_change(all_logp(x, False), all_logp(y, False), split=5)
    assert prefix > 0.0  # the bidirectional row 4 reads position 5


@pytest.mark.parametrize("decoder", ["cf_valid_mix", "cf_bidir_skeleton_mix"])
@pytest.mark.parametrize("stride,rounds", [(2, 2), (3, 2)])
def test_fill_mixture_is_one_normalized_code(decoder, stride, rounds):
    # A mixture of the F normalized one-fill codes is normalized: with F = 3 fills the sum is
    # exactly 1 (not only <= 1 as for the averaged decoder), whatever the scorer.
    for scorer in (coupled_markov(), MixingScorer(3, seed=6)):
        settings = cf.CFSettings(vocab_size=3, stride=stride, rounds=rounds, n_random=3, seed=42)
        report = audits.normalization_audit(scorer, decoder, settings, T=5)
        assert abs(report["total_prob"] - 1.0) <= 1e-9
        averaged = audits.normalization_audit(scorer, decoder.removesuffix("_mix"), settings, T=5)
        assert averaged["total_prob"] < report["total_prob"]  # AM-GM: the averaged code wastes mass
