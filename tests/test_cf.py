"""Tests of the Coarse-to-Fine decoders (cf.py): schedule, hand-computed numbers, a slow
reference, scoring each target once, shared fills, argument validation."""

import math

import numpy as np
import pytest

from meadow_golf.eval import cf
from meadow_golf.eval.toy_scorers import MarkovScorer, MixingScorer, UnigramScorer

# ar and the CF decoders, whose contracts (stages, call counts, the slow reference) these tests
# check; the chain-rule decoders of the bidirectional pass (one forward per target, bidir_confidence
# in an adaptive order) have their own tests in tests/test_absorbing_cf.py.
CHAIN_RULE = ("bidir_l2r", "bidir_confidence")
CF_FAMILY = sorted(d for d in cf.DECODERS if d not in CHAIN_RULE)

ln = math.log
CF_DECODERS = ["cf_published", "cf_valid", "cf_bidir_skeleton"]


# ----------------------------------------------------------------------------- schedule


def test_schedule_matches_spec_round_robin():
    # METHOD.md §5 with s=2, r=2: skeleton 0,2,4,...; round 0 = {1,5,9,...}, round 1 = {3,7,11,...}.
    assert cf.decoding_order("cf_published", 12, 2, 2) == [
        [0], [2], [4], [6], [8], [10], [1, 5, 9], [3, 7, 11]
    ]
    # s=3, r=2: gaps 1,2,4,5,7 get gap indices 0..4 -> rounds 0,1,0,1,0.
    assert cf.decoding_order("cf_valid", 8, 3, 2) == [[0], [3], [6], [1, 4, 7], [2, 5]]
    assert cf.decoding_order("ar", 3, 2, 2) == [[0], [1], [2]]
    # More rounds than gaps: empty rounds are not stages.
    assert cf.decoding_order("cf_valid", 4, 2, 5) == [[0], [2], [1], [3]]
    assert cf.decoding_order("cf_valid", 1, 2, 2) == [[0]]


@pytest.mark.parametrize("decoder", CF_FAMILY)
@pytest.mark.parametrize("T,stride,rounds", [(1, 2, 1), (7, 2, 2), (10, 3, 3), (9, 4, 1)])
def test_decoding_order_partitions_targets(decoder, T, stride, rounds):
    stages = cf.decoding_order(decoder, T, stride, rounds)
    flat = [p for stage in stages for p in stage]
    assert sorted(flat) == list(range(T))


def test_registry():
    assert set(cf.DECODERS) >= {"ar", "cf_published", "cf_valid", "cf_bidir_skeleton"}
    assert cf.VALID == {"ar": True, "cf_published": False, "cf_valid": True, "cf_bidir_skeleton": True,
                        "cf_valid_mix": True, "cf_bidir_skeleton_mix": True, "bidir_l2r": True,
                        "bidir_confidence": True}


def test_decoder_fields_give_the_lists_the_tools_kept_by_hand():
    """The fields of cf.DECODERS (valid, family, expensive, report_rank) reproduce, in their order,
    the three lists that eval_cf.EXPENSIVE_DECODERS and summarize's VALID_DECODERS / BIDIR_DECODERS
    wrote out by hand before issue 18 (copied here from that code)."""
    assert cf.decoders_where(expensive=True) == ("cf_bidir_skeleton", "cf_bidir_skeleton_mix", "bidir_l2r",
                                                 "bidir_confidence")
    assert cf.decoders_where(valid=True) == ("ar", "cf_valid", "cf_bidir_skeleton", "cf_valid_mix",
                                             "cf_bidir_skeleton_mix", "bidir_l2r", "bidir_confidence")
    assert cf.decoders_where(family="bidir") == ("bidir_l2r", "bidir_confidence")
    assert cf.decoders_where(valid=False) == ("cf_published",)
    assert cf.decoders_where() == tuple(sorted(cf.DECODERS, key=lambda n: cf.DECODERS[n].report_rank))
    assert len({d.report_rank for d in cf.DECODERS.values()}) == len(cf.DECODERS)  # a total order
    with pytest.raises(ValueError, match="unknown decoder family"):
        cf.decoders_where(family="mixture")


# ----------------------------------------------------------------------------- hand-computed case


class CopyScorer:
    """V = 3. A scorer whose outputs are easy to compute by hand.

    causal row i:  p(t) = 1/2 if t == inputs[i] else 1/4.
    bidir row i:   p(t) = (1 + [t == inputs[i]] + 2 [t == inputs[i+2]]) / Z,
                   Z = 6 if i + 2 < T else 4 (the last factor absent).
    The bidirectional row reads its own (filled) position and one two to the right, which for
    s=2, r=2 is a position of the next round: the fills matter.
    """

    def __call__(self, inputs, is_causal, targets):
        inputs, targets = np.asarray(inputs), np.asarray(targets)
        if is_causal:
            return np.log(np.where(targets == inputs, 0.5, 0.25))
        T = inputs.shape[1]
        weight = 1.0 + (targets == inputs)
        weight[:, : T - 2] += 2.0 * (targets[:, : T - 2] == inputs[:, 2:])
        Z = np.where(np.arange(T) + 2 < T, 6.0, 4.0)
        return np.log(weight / Z)


# Fills for seed 42, T=4, rounds=2, V=3: [pass 1, round 0, round 1] x fill index x position.
FILLS_N1 = [[[0, 2, 1, 1]], [[1, 2, 0, 2]], [[0, 0, 1, 2]]]
FILLS_N2 = [[[0, 2, 1, 1], [1, 2, 0, 2]], [[0, 0, 1, 2], [2, 2, 2, 2]], [[1, 0, 2, 1], [1, 1, 0, 2]]]


def test_fill_stream_is_pinned():
    # The fills come from np.random.default_rng(seed).integers(0, V, (1 + rounds, n_random, T)).
    assert cf.draw_fills(42, 4, 2, 1, 3).tolist() == FILLS_N1
    assert cf.draw_fills(42, 4, 2, 2, 3).tolist() == FILLS_N2
    expected = np.random.default_rng(7).integers(0, 11, size=(4, 5, 9))
    np.testing.assert_array_equal(cf.draw_fills(7, 9, 3, 5, 11), expected)


# Window: context 0, targets x = [1, 0, 2, 2]; skeleton {0, 2}, round 0 = {1}, round 1 = {3}.
# Worked by hand from CopyScorer and the fills above (P = pass-1 fill, R0/R1 = round fills):
#  ar: x0=1 after 0: 1/4; x1=0 after 1: 1/4; x2=2 after 0: 1/4; x3=2 after 2: 1/2.
#  cf_published pass 1 (true prev [0,1,0,2]): x0 -> 1/4, x2 (after x1=0) -> 1/4.
#  pass 2, round 0: input [1, R0[1], 2, R0[3]], p(x1=0) = (1 + [0==R0[1]] + 2[0==R0[3]]) / 6
#    n=1: R0 = [1,2,0,2] -> 1/6.   n=2: R0 = [0,0,1,2] -> 2/6,  R0 = [2,2,2,2] -> 1/6.
#  round 1: input [1, 0, 2, R1[3]], p(x3=2) = (1 + [2==R1[3]]) / 4
#    n=1: R1[3] = 2 -> 2/4.         n=2: R1[3] = 1 -> 1/4,  R1[3] = 2 -> 2/4.
#  cf_valid pass 1: input [0, 1, P[1], 2] (x1 hidden): x0 -> 1/4; x2 after P[1] = 2 -> 1/2
#    (P[1] = 2 for n=1 and for both fills of n=2).
#  cf_bidir_skeleton pass 1: x0 from input P: (1 + [1==P[0]] + 2[1==P[2]]) / 6
#    n=1: P = [0,2,1,1] -> 3/6.     n=2: 3/6 and, P = [1,2,0,2], 2/6.
#    x2 from input [1, P[1], P[2], P[3]]: (1 + [2==P[2]]) / 4 -> 1/4 (P[2] = 1 or 0).
HAND_SEQ = np.array([[0, 1, 0, 2, 2]])
HAND_EXPECTED = {
    1: {
        "ar": [ln(4), ln(4), ln(4), ln(2)],
        "cf_published": [ln(4), ln(6), ln(4), ln(2)],
        "cf_valid": [ln(4), ln(6), ln(2), ln(2)],
        "cf_bidir_skeleton": [ln(2), ln(6), ln(4), ln(2)],
    },
    2: {
        "ar": [ln(4), ln(4), ln(4), ln(2)],
        "cf_published": [ln(4), (ln(3) + ln(6)) / 2, ln(4), (ln(4) + ln(2)) / 2],
        "cf_valid": [ln(4), (ln(3) + ln(6)) / 2, ln(2), (ln(4) + ln(2)) / 2],
        "cf_bidir_skeleton": [(ln(2) + ln(3)) / 2, (ln(3) + ln(6)) / 2, ln(4), (ln(4) + ln(2)) / 2],
    },
}


@pytest.mark.parametrize("n_random", [1, 2])
@pytest.mark.parametrize("decoder", ["ar", "cf_published", "cf_valid", "cf_bidir_skeleton"])
def test_hand_computed_case(decoder, n_random):
    parts = cf.decode_parts(CopyScorer(), HAND_SEQ, decoder,
                            cf.CFSettings(vocab_size=3, stride=2, rounds=2, n_random=n_random, seed=42))
    np.testing.assert_allclose(parts["nll"][0], HAND_EXPECTED[n_random][decoder], rtol=0, atol=1e-12)
    assert parts["nll"].dtype == np.float64
    if decoder == "ar":
        assert parts["pass1"].tolist() == [True] * 4
    else:
        assert parts["pass1"].tolist() == [True, False, True, False]
    assert parts["pass2"].tolist() == (~parts["pass1"]).tolist()


# ----------------------------------------------------------------------------- slow reference


def reference_nll(scorer, seq, decoder, stride, rounds, n_random, seed, vocab_size):
    """One window, one target at a time, straight from the definitions (no cf.py code)."""
    T = len(seq) - 1
    prev, x = np.array(seq[:-1]), np.array(seq[1:])
    fills = np.random.default_rng(seed).integers(0, vocab_size, size=(1 + rounds, n_random, T))
    skeleton = [p for p in range(T) if p % stride == 0]
    gaps = [p for p in range(T) if p % stride != 0]
    round_of = {g: i % rounds for i, g in enumerate(gaps)}

    def score(inputs, is_causal, position):
        return float(scorer(np.array([inputs]), is_causal, np.array([x]))[0, position])

    base = decoder.removesuffix("_mix")
    out, per_fill = [], {}
    for p in range(T):
        if decoder == "ar" or (decoder == "cf_published" and p in skeleton):  # true prefix
            out.append(-score(prev, True, p))
            continue
        values = []
        for f in range(n_random):
            if p in round_of:  # gap of round k: later rounds and its own round are fill
                k = round_of[p]
                inputs = [fills[1 + k, f, q] if q in round_of and round_of[q] >= k else x[q] for q in range(T)]
                values.append(-score(inputs, False, p))
            elif base == "cf_valid":  # prev column i holds target i-1; hide gap targets
                inputs = [prev[0]] + [fills[0, f, i - 1] if (i - 1) in round_of else prev[i] for i in range(1, T)]
                values.append(-score(inputs, True, p))
            elif base == "cf_bidir_skeleton":  # only earlier skeleton targets visible
                inputs = [x[q] if (q in skeleton and q < p) else fills[0, f, q] for q in range(T)]
                values.append(-score(inputs, False, p))
            else:
                raise AssertionError(decoder)
        per_fill[p] = values
        out.append(float(np.mean(values)))
    if decoder.endswith("_mix"):
        # The mixture over fills decoded one target at a time: skeleton, then each round, left to
        # right; each target costs -log sum_f w_f q_f with w_f the fill's posterior weight given
        # the targets decoded before it (plain probabilities: these windows are short).
        order = skeleton + sorted(round_of, key=lambda g: (round_of[g], g))
        weights = [1.0 / n_random] * n_random
        for p in order:
            q = [math.exp(-v) for v in per_fill[p]]
            step = sum(w * qf for w, qf in zip(weights, q))
            out[p] = -math.log(step)
            weights = [w * qf / step for w, qf in zip(weights, q)]
    return out


@pytest.mark.parametrize("decoder", CF_FAMILY)
@pytest.mark.parametrize(
    "T,stride,rounds,n_random",
    [(9, 2, 2, 3), (10, 3, 2, 2), (11, 3, 3, 1), (8, 2, 1, 2), (1, 2, 2, 2), (2, 4, 2, 1)],
)
def test_matches_slow_reference(decoder, T, stride, rounds, n_random):
    V = 7
    scorer = MixingScorer(V, seed=T + stride)
    seqs = np.random.default_rng(T * 100 + stride).integers(0, V, size=(4, T + 1))
    got = cf.decode_nll(scorer, seqs, decoder,
                        cf.CFSettings(vocab_size=V, stride=stride, rounds=rounds, n_random=n_random, seed=5))
    for b in range(len(seqs)):
        want = reference_nll(scorer, seqs[b].tolist(), decoder, stride, rounds, n_random, 5, V)
        np.testing.assert_allclose(got[b], want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- scored once


class TaggingScorer:
    """Returns log-prob -(1000 * (call + 1) + row): an NLL names the call and row it came from."""

    def __init__(self):
        self.calls = []  # (inputs copy, is_causal)

    def __call__(self, inputs, is_causal, targets):
        self.calls.append((np.array(inputs), is_causal))
        B, T = np.shape(targets)
        return -(1000.0 * len(self.calls) + np.broadcast_to(np.arange(T, dtype=float), (B, T)))


@pytest.mark.parametrize("decoder", CF_FAMILY)
def test_each_target_scored_once_in_place(decoder):
    T, stride, rounds = 11, 2, 2
    scorer = TaggingScorer()
    seqs = np.random.default_rng(0).integers(0, 5, size=(3, T + 1))
    parts = cf.decode_parts(scorer, seqs, decoder,
                            cf.CFSettings(vocab_size=5, stride=stride, rounds=rounds, n_random=1, seed=1))
    nll = parts["nll"]
    call = np.rint(nll // 1000).astype(int) - 1
    row = np.rint(nll % 1000).astype(int)
    # Every target is read from its own row (causal row i predicts x[i]; bidir scores in place)
    # of exactly one call (a sum of two tags would not decode to the right row).
    assert (row == np.arange(T)).all()
    assert (call == call[0]).all()  # the same call for every window of the batch
    stages = cf.decoding_order(decoder, T, stride, rounds)
    # One call per stage group: ar 1; cf_published 1 causal + one per round; cf_valid one
    # pass-1 call + rounds; cf_bidir_skeleton one per skeleton token + rounds.
    n_calls = {"ar": 1, "cf_published": 1 + rounds, "cf_valid": 1 + rounds,
               "cf_bidir_skeleton": (T + 1) // 2 + rounds}[decoder.removesuffix("_mix")]
    assert len(scorer.calls) == n_calls
    causal = [c for _, c in scorer.calls]
    pass1, pass2 = parts["pass1"], parts["pass2"]
    assert not (pass1 & pass2).any() and (pass1 | pass2).all()
    for stage in stages:
        is_causal = causal[call[0, stage[0]]]
        for p in stage:
            if pass2[p]:
                assert not is_causal
            elif not decoder.startswith("cf_bidir_skeleton"):
                assert is_causal
    # Gaps of one round come from one call; different rounds from different calls.
    if decoder != "ar":
        assert pass1.tolist() == [p % stride == 0 for p in range(T)]
        assert len({call[0, p] for p in (1, 5, 9)}) == 1 and len({call[0, p] for p in (3, 7)}) == 1
        assert call[0, 1] != call[0, 3]


@pytest.mark.parametrize("decoder", CF_DECODERS)
def test_mean_over_fills_is_mean_of_nll(decoder):
    # With n_random = 2, a gap's NLL is the mean of the two tags of its round's two calls.
    scorer = TaggingScorer()
    seqs = np.zeros((2, 6), dtype=np.int64)
    nll = cf.decode_nll(scorer, seqs, decoder, cf.CFSettings(vocab_size=3, n_random=2, seed=0))
    n_pass1 = {"cf_published": 1, "cf_valid": 2, "cf_bidir_skeleton": 6}[decoder]
    # Round 0 = {1} comes from calls n_pass1 + 1, n_pass1 + 2 (1-based tags).
    assert nll[0, 1] == pytest.approx((1000 * (n_pass1 + 1) + 1 + 1000 * (n_pass1 + 2) + 1) / 2)
    assert len(scorer.calls) == n_pass1 + 2 * 2


# ----------------------------------------------------------------------------- shared fills


class RecordingScorer:
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, inputs, is_causal, targets):
        self.calls.append(np.array(inputs))
        return self.inner(inputs, is_causal, targets)


@pytest.mark.parametrize("decoder", CF_DECODERS)
def test_fills_do_not_depend_on_tokens_or_batch(decoder):
    V, T = 6, 9
    rng = np.random.default_rng(3)
    batch_a = rng.integers(0, V, size=(2, T + 1))
    batch_b = (batch_a[[0, 1, 0, 1, 0]] + np.arange(1, 6)[:, None]) % V  # other tokens, other B
    rec_a, rec_b = RecordingScorer(MixingScorer(V)), RecordingScorer(MixingScorer(V))
    for rec, batch in ((rec_a, batch_a), (rec_b, batch_b)):
        cf.decode_nll(rec, batch, decoder, cf.CFSettings(vocab_size=V, n_random=2, seed=11))
    assert len(rec_a.calls) == len(rec_b.calls)
    n_filled = 0
    for inputs_a, inputs_b in zip(rec_a.calls, rec_b.calls):
        # A column that is filled holds the same token in every row of both batches; every other
        # column holds the window's own tokens, which differ between the batches everywhere.
        filled = (inputs_a == inputs_a[0]).all(0) & (inputs_b == inputs_a[0]).all(0)
        for batch, inputs in ((batch_a, inputs_a), (batch_b, inputs_b)):
            own = (inputs == batch[:, :-1]).all(0) | (inputs == batch[:, 1:]).all(0)
            assert (filled | own).all()
        n_filled += int(filled.sum())
    assert n_filled > 0
    # cf_published's pass 1 is the true prefix: its first call fills nothing.
    if decoder == "cf_published":
        np.testing.assert_array_equal(rec_a.calls[0], batch_a[:, :-1])


@pytest.mark.parametrize("decoder", CF_FAMILY)
def test_window_score_does_not_depend_on_batch(decoder):
    V = 5
    scorer = MarkovScorer.sticky(V, seed=2)
    seqs = np.random.default_rng(4).integers(0, V, size=(5, 13))
    together = cf.decode_nll(scorer, seqs, decoder, cf.CFSettings(vocab_size=V))
    for b in range(len(seqs)):
        alone = cf.decode_nll(scorer, seqs[b : b + 1], decoder, cf.CFSettings(vocab_size=V))
        np.testing.assert_allclose(alone[0], together[b], rtol=1e-13, atol=0)


def test_cf_decoders_share_pass2_and_unigram_makes_all_equal():
    V = 6
    seqs = np.random.default_rng(8).integers(0, V, size=(3, 15))
    parts = {d: cf.decode_parts(MixingScorer(V), seqs, d, cf.CFSettings(vocab_size=V)) for d in CF_DECODERS}
    gaps = parts["cf_valid"]["pass2"]
    for d in CF_DECODERS:
        np.testing.assert_array_equal(parts[d]["nll"][:, gaps], parts["cf_valid"]["nll"][:, gaps])
    # A scorer that reads no other token gives every decoder the same code lengths.
    unigram = UnigramScorer([1, 2, 3, 4, 5, 6])
    ar = cf.decode_nll(unigram, seqs, "ar", cf.CFSettings(vocab_size=V))
    for d in CF_DECODERS:
        np.testing.assert_allclose(cf.decode_nll(unigram, seqs, d, cf.CFSettings(vocab_size=V)), ar, rtol=1e-15)


def test_decode_nll_is_decode_parts_nll():
    V = 4
    seqs = np.random.default_rng(1).integers(0, V, size=(2, 8))
    settings = cf.CFSettings(stride=3, rounds=2, n_random=2, seed=9, vocab_size=V)
    nll = cf.decode_nll(MixingScorer(V), seqs, "cf_valid", settings)
    np.testing.assert_array_equal(nll, cf.decode_parts(MixingScorer(V), seqs, "cf_valid", settings)["nll"])
    assert nll.shape == (2, 7) and nll.dtype == np.float64 and np.isfinite(nll).all()


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(stride=1), "stride"),
        (dict(stride=0), "stride"),
        (dict(rounds=0), "rounds"),
        (dict(n_random=0), "n_random"),
        (dict(decoder="cf_magic"), "unknown decoder"),
        (dict(seqs=np.zeros((2, 1), dtype=np.int64)), "T >= 1"),
        (dict(seqs=np.zeros(5, dtype=np.int64)), "2-D"),
        (dict(seqs=np.zeros((2, 5))), "integer"),
        (dict(seqs=np.full((2, 5), 4)), r"\[0, 4\)"),
        (dict(seqs=np.full((2, 5), -1)), r"\[0, 4\)"),
        (dict(vocab_size=0), "vocab_size"),
    ],
)
def test_argument_validation(kwargs, message):
    args = dict(seqs=np.zeros((2, 5), dtype=np.int64), decoder="cf_valid", vocab_size=4)
    args.update(kwargs)
    seqs, decoder = args.pop("seqs"), args.pop("decoder")
    with pytest.raises(ValueError, match=message):
        cf.decode_nll(MixingScorer(4), seqs, decoder, cf.CFSettings(**args))


def test_decoding_order_validates():
    with pytest.raises(ValueError, match="unknown decoder"):
        cf.decoding_order("nope", 4)
    with pytest.raises(ValueError, match="stride"):
        cf.decoding_order("cf_valid", 4, stride=1)


def test_scorer_shape_is_checked():
    with pytest.raises(ValueError, match="scorer returned shape"):
        cf.decode_nll(lambda i, c, t: np.zeros((1, 1)), np.zeros((2, 5), dtype=np.int64), "ar",
                      cf.CFSettings(vocab_size=3))


# ----------------------------------------------------------------------------- fill mixture

MIX_DECODERS = ["cf_valid_mix", "cf_bidir_skeleton_mix"]


def per_fill_window_nll(scorer, seqs, base, n_random, seed, V, stride=2, rounds=2):
    """(F, B): each fill realization scored as its own one-fill code, summed over the window."""
    T = seqs.shape[1] - 1
    fills = cf.draw_fills(seed, T, rounds, n_random, V)
    return np.stack([
        cf.decode_nll(scorer, seqs, base,
                      cf.CFSettings(vocab_size=V, stride=stride, rounds=rounds, n_random=1),
                      fills=fills[:, f : f + 1]).sum(axis=1)
        for f in range(n_random)
    ])


@pytest.mark.parametrize("decoder", MIX_DECODERS)
@pytest.mark.parametrize("stride,rounds,n_random", [(2, 2, 3), (3, 2, 4), (2, 1, 2)])
def test_mixture_is_brute_force_mixture_of_fill_codes(decoder, stride, rounds, n_random):
    from scipy.special import logsumexp  # an implementation independent of cf._logsumexp0

    V, T = 6, 11
    scorer = MixingScorer(V, seed=3)
    seqs = np.random.default_rng(5).integers(0, V, size=(5, T + 1))
    base = decoder.removesuffix("_mix")
    settings = cf.CFSettings(stride=stride, rounds=rounds, n_random=n_random, seed=7, vocab_size=V)
    mix = cf.decode_nll(scorer, seqs, decoder, settings).sum(axis=1)
    averaged = cf.decode_nll(scorer, seqs, base, settings).sum(axis=1)
    fill_nll = per_fill_window_nll(scorer, seqs, base, n_random, 7, V, stride, rounds)
    # -log (1/F) sum_f exp(-NLL_f), from the per-fill codes only.
    want = -(logsumexp(-fill_nll, axis=0) - math.log(n_random))
    np.testing.assert_allclose(mix, want, rtol=1e-12, atol=0)
    # The averaged decoder is the mean of the same per-fill codes ...
    np.testing.assert_allclose(averaged, fill_nll.mean(axis=0), rtol=1e-12, atol=0)
    # ... and Jensen: the mixture is never longer, and here strictly shorter in every window
    # (the fills disagree). It costs at most log F more than the best fill of the window.
    assert (mix < averaged).all()
    best = fill_nll.min(axis=0)
    assert (mix >= best - 1e-12).all() and (mix <= best + math.log(n_random) + 1e-12).all()


@pytest.mark.parametrize("decoder", MIX_DECODERS)
def test_mixture_with_one_fill_is_the_averaged_decoder(decoder):
    V = 5
    seqs = np.random.default_rng(6).integers(0, V, size=(3, 10))
    settings = cf.CFSettings(n_random=1, seed=3, vocab_size=V)
    for key in ("nll", "pass1", "pass2"):
        np.testing.assert_array_equal(cf.decode_parts(MixingScorer(V), seqs, decoder, settings)[key],
                                      cf.decode_parts(MixingScorer(V), seqs, decoder.removesuffix("_mix"),
                                                      settings)[key])


@pytest.mark.parametrize("decoder", MIX_DECODERS)
def test_mixture_pass1_is_the_skeletons_own_mixture(decoder):
    # The per-target split decodes the skeleton first, so the pass-1 part of a window is the
    # mixture over fills of the skeleton's fill-f log-probs alone.
    V, T, F = 5, 9, 3
    scorer = MixingScorer(V, seed=1)
    seqs = np.random.default_rng(2).integers(0, V, size=(4, T + 1))
    parts = cf.decode_parts(scorer, seqs, decoder, cf.CFSettings(vocab_size=V, n_random=F, seed=4))
    fills = cf.draw_fills(4, T, 2, F, V)
    skeleton_nll = np.stack([cf.decode_nll(scorer, seqs, decoder,
                                           cf.CFSettings(vocab_size=V, n_random=1, seed=4),
                                           fills=fills[:, f : f + 1])[:, parts["pass1"]].sum(axis=1)
                             for f in range(F)])
    want = -np.log(np.exp(-skeleton_nll).mean(axis=0))
    np.testing.assert_allclose(parts["nll"][:, parts["pass1"]].sum(axis=1), want, rtol=1e-12)


def test_mixture_is_stable_for_long_windows():
    # Window totals of thousands of nats (a scorer's log-probs scaled by 1000; stability needs no
    # normalization): exp(-total) is 0 in float64, so a naive mean of the Q_f would give log(0).
    from scipy.special import logsumexp

    V = 4
    inner = MixingScorer(V, seed=2)

    def scorer(inputs, is_causal, targets):
        return 1000.0 * inner(inputs, is_causal, targets)

    seqs = np.random.default_rng(3).integers(0, V, size=(3, 33))
    mix = cf.decode_nll(scorer, seqs, "cf_valid_mix", cf.CFSettings(vocab_size=V, n_random=3, seed=1)).sum(axis=1)
    fill_nll = per_fill_window_nll(scorer, seqs, "cf_valid", 3, 1, V)
    assert fill_nll.min() > 1e4 and (np.exp(-fill_nll) == 0).all()
    np.testing.assert_allclose(mix, -(logsumexp(-fill_nll, axis=0) - math.log(3)), rtol=1e-12)


def test_mixture_runs_no_forward_of_its_own():
    V = 5
    seqs = np.random.default_rng(9).integers(0, V, size=(3, 12))
    for base in ("cf_valid", "cf_bidir_skeleton"):
        inner = RecordingScorer(MixingScorer(V))
        memo = cf.MemoScorer(inner)
        cf.decode_nll(memo, seqs, base, cf.CFSettings(vocab_size=V, n_random=3))
        n_forwards = len(inner.calls)
        cf.decode_nll(memo, seqs, base + "_mix", cf.CFSettings(vocab_size=V, n_random=3))
        assert len(inner.calls) == n_forwards
