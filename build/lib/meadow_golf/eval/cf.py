"""Coarse-to-Fine (CF) decoders, backend-independent (numpy only).

A decoder turns a model into per-token code lengths (NLL in nats) for windows of tokens.
The model is reached only through a *scorer*:

    scorer(inputs: int64 (B, T), is_causal: bool, targets: int64 (B, T)) -> float (B, T)

returning the log-probability the model gives targets[:, i] at row i, where
  causal (is_causal=True):   row i is the distribution of the token AFTER inputs[:, i];
  bidirectional (False):     row i is the distribution of the token AT position i.
Only the target log-probs cross the boundary, so a backend never ships B*T*V floats.

Windows: seqs is an int array (B, T+1). Column 0 is context only; the T targets are
x = seqs[:, 1:]. prev = seqs[:, :-1] is the causal input, so causal row j predicts x[j]
from seqs[:, 0..j] (context plus x[0..j-1]); bidirectional row j scores x[j] in place.

Schedule (METHOD.md §5), stride s, rounds r: skeleton = target positions 0, s, 2s, ...;
gaps = the rest, assigned round-robin by gap index (gap_index % r). With s=2, r=2:
round 0 = {1, 5, 9, ...}, round 1 = {3, 7, 11, ...}.

Decoders (name: definition):
  ar:                 one causal forward of prev; every target scored by its full true prefix.
  cf_published:       METHOD.md §5 as the original computed it. Pass 1: causal forward of the FULL
                      true prev, score the skeleton. Pass 2: round by round, bidirectional
                      forward of x with this round and all later rounds replaced by random fill,
                      score this round in place; NLL averaged over n_random fills. NOT a code
                      length: a skeleton token is scored given gap tokens that are decoded later.
  cf_valid:           as cf_published, but pass 1 hides every gap token (not yet decoded when
                      the skeleton is decoded) by random fill in the causal input, averaged over
                      n_random fills like pass 2. Order: skeleton left to right, round 0, 1, ...
  cf_bidir_skeleton:  as cf_valid, but each skeleton token x[j] is scored by its own
                      bidirectional forward of x in which every position except the earlier
                      skeleton positions (so x[j] itself, later skeleton positions and all gaps)
                      is random fill. Costs one forward per skeleton token per fill.
  cf_valid_mix,       the same forwards as cf_valid / cf_bidir_skeleton, but the n_random fills are
  cf_bidir_skeleton_mix: combined as a mixture, -log (1/F) sum_f Q_f(x) per window (Q_f: the
                      product of the window's fill-f conditionals), instead of the mean of -log
                      Q_f. Computed by log-sum-exp; see _mixture_over_fills for its per-target
                      split. Scored after their base decoder through one MemoScorer (eval_cf.py),
                      they run no forward of their own.

Random fill (shared randomness). fills = draw_fills(seed, T, rounds, n_random, vocab_size) is
an int64 array (1 + rounds, n_random, T) drawn once per call from
np.random.default_rng(seed).integers(0, vocab_size, size=(1 + rounds, n_random, T)).
fills[0, f] is the pass-1 fill (used by cf_valid and cf_bidir_skeleton), fills[1 + k, f] the
fill of round k (shared by every CF decoder, so their pass-2 parts are identical). A fill is
indexed by the *target position it hides* (x position), by stage and by fill index; it never
depends on token values, on the batch size or on the other rows: every row of the batch uses
the same fills, so a window's score does not depend on which windows share its batch.

Why the valid decoders give code lengths. Fix one fill realization phi (fill f of every stage).
A valid decoder scores each target x_p with a conditional q_phi(x_p | c, x_{earlier stages}, phi)
that is normalized over the vocabulary and reads only the context c, tokens of strictly
earlier stages of its order (decoding_order) and the data-independent fill. Within a stage no
position reads another of the same stage. So Q_phi(x) = prod_p q_phi(x_p | ...) is a product of
normalized conditionals in a fixed order; summing over the last stage's tokens first and going
backwards gives sum_x Q_phi(x) = 1 EXACTLY (n_random = 1; for a scorer whose distributions are
normalized over the vocab). With F = n_random > 1 fills the reported NLL is the mean over fills
of -log q, and since the mean commutes with the sum over positions,
    exp(-total NLL(x)) = (prod_f Q_f(x))^(1/F)   (a geometric mean of normalized distributions)
                       <= (1/F) sum_f Q_f(x)      (AM-GM; this is Jensen: exp(-mean NLL) <= mean p)
so sum_x exp(-total NLL(x)) <= 1: the Kraft inequality holds and the mean NLL is a valid
(slightly pessimistic) code length. Each single fill realization is itself a valid code;
a coder with the shared seed can also use the mixture -log mean_f Q_f(x), which is shorter
(Jensen) and exactly normalized (a mixture of normalized distributions): the *_mix decoders.
cf_published breaks this: its pass-1 factor for skeleton x[j] reads the gap x[j-1], whose own
pass-2 factor reads x[j]; no decoding order has both, the product is not normalized and its
sum over all sequences can exceed 1 (METHOD.md §6).
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass
from typing import Callable

import numpy as np

# The schedule and the fills are cf_schedule.py's; cf's users reach them here as cf.make_schedule etc.
from meadow_golf.eval.cf_schedule import (CFSettings, Schedule, draw_fills, make_fills, make_schedule,  # noqa: F401
                                          mask_fills)

Scorer = Callable[[np.ndarray, bool, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- scorer calls


def _target_logp(scorer: Scorer, inputs: np.ndarray, is_causal: bool, targets: np.ndarray) -> np.ndarray:
    logp = np.asarray(scorer(inputs, is_causal, targets), dtype=np.float64)
    if logp.shape != targets.shape:
        raise ValueError(f"scorer returned shape {logp.shape}, expected {targets.shape}")
    return logp


def _with_fill(tokens: np.ndarray, positions: np.ndarray, fill_row: np.ndarray) -> np.ndarray:
    """Copy of tokens (B, T) with columns `positions` set to fill_row[positions] in every row."""
    out = tokens.copy()
    out[:, positions] = fill_row[positions]
    return out


class MemoScorer:
    """A scorer that answers a repeated call (same inputs, mode and targets) from memory.

    The decoders of one batch repeat forwards: `ar` and cf_published's pass 1 are the same
    causal forward of the true prefix, and the pass-2 rounds of every CF decoder are the same
    bidirectional forwards (the fills are shared). Scoring all decoders through one MemoScorer
    per batch runs 1 + n_random + rounds * n_random forwards instead of 2 + n_random + 2 *
    rounds * n_random (10 instead of 17 at the original protocol) and returns identical numbers.
    Keys are SHA-256 digests of the arrays; call clear() between batches to bound the memory.
    """

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.memory: dict[tuple, np.ndarray] = {}
        self.calls = self.hits = 0
        if hasattr(scorer, "max_logp"):  # the confidence of bidir_confidence, passed through unmemoized
            self.max_logp = scorer.max_logp

    @staticmethod
    def _digest(a: np.ndarray) -> str:
        a = np.ascontiguousarray(a, dtype=np.int64)
        return hashlib.sha256(a.tobytes() + str(a.shape).encode()).hexdigest()

    def __call__(self, inputs: np.ndarray, is_causal: bool, targets: np.ndarray) -> np.ndarray:
        self.calls += 1
        key = (self._digest(inputs), bool(is_causal), self._digest(targets))
        if key in self.memory:
            self.hits += 1
        else:
            self.memory[key] = np.asarray(self.scorer(inputs, is_causal, targets), dtype=np.float64)
        return self.memory[key].copy()

    def clear(self) -> None:
        self.memory.clear()


# ----------------------------------------------------------------------------- decoders
# Each decoder fills nll (B, T) in place from (prev, x) and returns the pass-1 mask (T,).


def _ar(scorer, prev, x, schedule, fills, nll) -> np.ndarray:
    nll[:] = -_target_logp(scorer, prev, True, x)
    return np.ones(schedule.T, dtype=bool)


def _gap_rounds(scorer, x, schedule, fills, logp) -> None:
    """Pass 2, shared by every CF decoder: round k is scored with rounds >= k hidden.

    Writes the log-prob of each round position under each fill f into logp[f] (F, B, T)."""
    n_random = fills.shape[1]
    for k, positions in enumerate(schedule.round_positions):
        if positions.size == 0:
            continue
        hidden = schedule.hidden_from_round(k)
        for f in range(n_random):
            logp[f][:, positions] = _target_logp(scorer, _with_fill(x, hidden, fills[1 + k, f]), False, x)[:, positions]


def _skeleton_mask(schedule: Schedule) -> np.ndarray:
    mask = np.zeros(schedule.T, dtype=bool)
    mask[schedule.skeleton] = True
    return mask


def _per_fill(x, fills) -> np.ndarray:
    """Empty per-fill log-prob array (F, B, T); NaN until a pass writes its positions."""
    return np.full((fills.shape[1],) + x.shape, np.nan)


def _mean_over_fills(logp, nll) -> None:
    """The averaged code: each target's NLL is the mean over fills of -log q_f (the AM-GM bound
    of the module docstring makes the total a valid, pessimistic code length). Subtracting fill
    by fill from 0 keeps the float operations of the original loop, so the numbers are unchanged."""
    total = np.zeros(nll.shape)
    for f in range(logp.shape[0]):
        total -= logp[f]
    nll[:] = total / logp.shape[0]


def _logsumexp0(a: np.ndarray) -> np.ndarray:
    """log(sum(exp(a), axis=0)) without overflow or underflow: shift by the largest term."""
    top = a.max(axis=0)
    return top + np.log(np.exp(a - top).sum(axis=0))


def _mixture_over_fills(logp, order: np.ndarray, nll) -> None:
    """The mixture code: per window, -log (1/F) sum_f Q_f(x) with Q_f the product of the fill-f
    conditionals, and a per-target split of it that is itself a sequential code.

    A mixture of F normalized codes is normalized, so this is a code length for a coder that
    shares the fill seed, and by Jensen it is never longer than the averaged code. It is decoded
    one target at a time in `order` (the decoder's stages, each stage left to right): with
    c_f(k) = sum of the fill-f log-probs of the first k targets in that order, target k costs
    -[M(k) - M(k-1)], M(k) = log mean_f exp(c_f(k)) (M(0) = 0). That is -log of a mixture of
    the fill-f conditionals weighted by each fill's posterior given the targets decoded before
    it, a normalized distribution reading only earlier targets; the costs telescope to the
    window total -M(n). The split only decides what pass 1 and pass 2 report (pass 1: the
    skeleton's own mixture code); the window total does not depend on it.
    With F = 1 it is the one fill's code, copied exactly rather than through the telescoping.
    """
    n_fills = logp.shape[0]
    if n_fills == 1:
        nll[:] = -logp[0]
        return
    cumulative = np.cumsum(logp[:, :, order], axis=2)  # (F, B, n): c_f(k)
    mixture = _logsumexp0(cumulative) - np.log(n_fills)  # (B, n): M(k)
    nll[:, order] = -np.diff(mixture, axis=1, prepend=0.0)


def _mixture_order(schedule: Schedule) -> np.ndarray:
    """Target positions in the order the mixture decoders decode them (see _order_cf_mix)."""
    return np.array([p for stage in _order_cf_mix(schedule) for p in stage], dtype=np.int64)


def _cf_published(scorer, prev, x, schedule, fills, nll) -> np.ndarray:
    skeleton = schedule.skeleton
    # The full true prefix: skeleton x[j] reads the gap x[j-1] (decoded later) -> not a code.
    true_prefix = -_target_logp(scorer, prev, True, x)[:, skeleton]
    logp = _per_fill(x, fills)
    logp[:, :, skeleton] = 0.0  # no fill in pass 1; set below, not averaged (x * F / F may round)
    _gap_rounds(scorer, x, schedule, fills, logp)
    _mean_over_fills(logp, nll)
    nll[:, skeleton] = true_prefix
    return _skeleton_mask(schedule)


def _valid_logp(scorer, prev, x, schedule, fills) -> np.ndarray:
    """Per-fill log-probs (F, B, T) of cf_valid: skeleton by a causal forward with the gaps filled."""
    skeleton = schedule.skeleton
    gaps = schedule.gaps
    # Gap target x[g] sits at prev column g+1 (x[T-1] never appears in prev). The fill is
    # indexed by the hidden target's x position g, so shift it by one column as well.
    gaps_in_prev = gaps[gaps + 1 < schedule.T]
    logp = _per_fill(x, fills)
    for f in range(fills.shape[1]):
        inputs = prev.copy()
        inputs[:, gaps_in_prev + 1] = fills[0, f, gaps_in_prev]
        logp[f][:, skeleton] = _target_logp(scorer, inputs, True, x)[:, skeleton]
    _gap_rounds(scorer, x, schedule, fills, logp)
    return logp


def _bidir_skeleton_logp(scorer, prev, x, schedule, fills) -> np.ndarray:
    """Per-fill log-probs (F, B, T) of cf_bidir_skeleton: one bidirectional forward per skeleton token."""
    skeleton = schedule.skeleton
    logp = _per_fill(x, fills)
    for f in range(fills.shape[1]):
        for m, j in enumerate(skeleton):
            # Everything but the m earlier skeleton tokens is fill (x[j] itself included).
            inputs = np.broadcast_to(fills[0, f], x.shape).copy()
            inputs[:, skeleton[:m]] = x[:, skeleton[:m]]
            logp[f][:, j] = _target_logp(scorer, inputs, False, x)[:, j]
    _gap_rounds(scorer, x, schedule, fills, logp)
    return logp


def _cf_valid(scorer, prev, x, schedule, fills, nll) -> np.ndarray:
    _mean_over_fills(_valid_logp(scorer, prev, x, schedule, fills), nll)
    return _skeleton_mask(schedule)


def _cf_bidir_skeleton(scorer, prev, x, schedule, fills, nll) -> np.ndarray:
    _mean_over_fills(_bidir_skeleton_logp(scorer, prev, x, schedule, fills), nll)
    return _skeleton_mask(schedule)


def _cf_valid_mix(scorer, prev, x, schedule, fills, nll) -> np.ndarray:
    _mixture_over_fills(_valid_logp(scorer, prev, x, schedule, fills), _mixture_order(schedule), nll)
    return _skeleton_mask(schedule)


def _cf_bidir_skeleton_mix(scorer, prev, x, schedule, fills, nll) -> np.ndarray:
    _mixture_over_fills(_bidir_skeleton_logp(scorer, prev, x, schedule, fills), _mixture_order(schedule), nll)
    return _skeleton_mask(schedule)


def _bidir_l2r(scorer, prev, x, schedule, fills, nll) -> np.ndarray:
    """Chain rule of the bidirectional pass, left to right: x[j] is scored by a bidirectional
    forward in which x[:j] is real and x[j:] (x[j] itself included) is the pass-1 fill (the mask
    token under absorbing noise). One forward per target per fill; fills averaged (AM-GM)."""
    logp = _per_fill(x, fills)
    for f in range(fills.shape[1]):
        for j in range(schedule.T):
            inputs = x.copy()
            inputs[:, j:] = fills[0, f, j:]
            logp[f][:, j] = _target_logp(scorer, inputs, False, x)[:, j]
    _mean_over_fills(logp, nll)
    return np.ones(schedule.T, dtype=bool)


def confidence_order(scorer, x: np.ndarray, fill_row: np.ndarray,
                     targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The adaptive order of bidir_confidence for one fill: (order int64 (B, T), logp (B, T)).

    At step k every not-yet-decoded position holds the fill; one bidirectional forward gives,
    at each such position, the log-prob of the true token (the code length if it is decoded now)
    and the model's confidence, its largest log-prob over the vocabulary (scorer.max_logp). The
    next position is the most confident hidden one (lowest index on a tie). The confidence is a
    function of the forward's inputs only (decoded tokens and fill), so a decoder that holds the
    decoded tokens picks the same position: the order is decodable and the product a valid code.
    order[b, k] is the position decoded at step k; logp[b, p] the log-prob it was coded with.
    targets (default x): the tokens whose log-probs are read; the order audit passes the original
    tokens with changed inputs to catch a score that reads its own or a later token."""
    targets = x if targets is None else targets
    B, T = x.shape
    hidden = np.ones((B, T), dtype=bool)
    order = np.empty((B, T), dtype=np.int64)
    logp = np.full((B, T), np.nan)
    rows = np.arange(B)
    for k in range(T):
        inputs = np.where(hidden, fill_row[None, :], x)
        step_logp = _target_logp(scorer, inputs, False, targets)
        confidence = np.asarray(scorer.max_logp(inputs, False), dtype=np.float64)
        # Decoded positions can never be chosen again; argmax takes the lowest index on a tie.
        chosen = np.where(hidden, confidence, -np.inf).argmax(axis=1)
        order[:, k] = chosen
        logp[rows, chosen] = step_logp[rows, chosen]
        hidden[rows, chosen] = False
    return order, logp


def _bidir_confidence(scorer, prev, x, schedule, fills, nll) -> np.ndarray:
    if not hasattr(scorer, "max_logp"):
        raise ValueError("bidir_confidence needs a scorer with max_logp(inputs, is_causal) (the confidence)")
    logp = _per_fill(x, fills)
    for f in range(fills.shape[1]):
        logp[f] = confidence_order(scorer, x, fills[0, f])[1]
    _mean_over_fills(logp, nll)
    return np.ones(schedule.T, dtype=bool)


def _order_ar(schedule: Schedule) -> list[list[int]]:
    return [[p] for p in range(schedule.T)]


def _order_cf(schedule: Schedule) -> list[list[int]]:
    """Skeleton left to right (one stage each), then each non-empty round as one stage."""
    stages = [[int(j)] for j in schedule.skeleton]
    stages += [[int(p) for p in positions] for positions in schedule.round_positions if positions.size]
    return stages


def _order_cf_mix(schedule: Schedule) -> list[list[int]]:
    """The CF order with every round split into single targets, left to right.

    The mixture's per-target cost reads the posterior over fills, which moves with every
    decoded target, including those of the same round; so each target is its own stage. Given
    a fill the targets of a round still do not read each other: only the weights do."""
    return [[p] for stage in _order_cf(schedule) for p in stage]


FAMILIES = ("ar", "cf", "bidir")


@dataclass(frozen=True)
class Decoder:
    """A decoder, declared once: what eval_cf runs and what the reports read (decoders_where)."""

    name: str
    definition: str
    valid: bool  # True: the NLL is a valid code length (Kraft sum <= 1)
    run: Callable  # (scorer, prev, x, schedule, fills, nll_out) -> pass-1 mask (T,)
    # The decoding order it claims, the same for every window; None for an adaptive order that
    # depends on the decoded tokens (bidir_confidence: audits.adaptive_order_audit checks it).
    order: Callable[[Schedule], list[list[int]]] | None
    # ar: the causal chain rule; cf: coarse-to-fine (skeleton, then gaps by rounds); bidir: the
    # bidirectional pass's own chain rule (METHOD.md §8, reported beside the ELBO).
    family: str = "cf"
    # True: many more forwards than ar (one per skeleton token or per target), so eval_cf runs it
    # only when --decoders names it.
    expensive: bool = False
    # Position in the reports' tables and tie-breaks (smaller first); independent of this dict's order.
    report_rank: int = 0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"decoder {self.name}: family {self.family!r} not in {FAMILIES}")


DECODERS: dict[str, Decoder] = {
    d.name: d
    for d in (
        Decoder("ar", "causal forward of the full true prefix", True, _ar, _order_ar, family="ar", report_rank=0),
        Decoder(
            "cf_published",
            "METHOD.md §5: skeleton by causal forward of the full true prefix, gaps by rounds",
            False,
            _cf_published,
            _order_cf,
            report_rank=1,
        ),
        Decoder(
            "cf_valid",
            "skeleton by causal forward with all gap tokens random-filled, gaps by rounds",
            True,
            _cf_valid,
            _order_cf,
            report_rank=2,
        ),
        Decoder(
            "cf_bidir_skeleton",
            "skeleton one token at a time by bidirectional forward with only earlier skeleton "
            "tokens visible (rest random fill), gaps by rounds",
            True,
            _cf_bidir_skeleton,
            _order_cf,
            expensive=True,
            report_rank=3,
        ),
        Decoder(
            "bidir_l2r",
            "chain rule of the bidirectional pass left to right: x[j] scored with x[j:] hidden by the fill",
            True,
            _bidir_l2r,
            _order_ar,
            family="bidir",
            expensive=True,
            report_rank=6,
        ),
        Decoder(
            "bidir_confidence",
            "chain rule of the bidirectional pass in an adaptive order: next the most confident hidden "
            "position, chosen from the decoded tokens only (order per window: confidence_order)",
            True,
            _bidir_confidence,
            None,
            family="bidir",
            expensive=True,
            report_rank=7,
        ),
        Decoder(
            "cf_valid_mix",
            "cf_valid's forwards, scored as the mixture over fills -log mean_f Q_f(x) per window",
            True,
            _cf_valid_mix,
            _order_cf_mix,
            report_rank=4,
        ),
        Decoder(
            "cf_bidir_skeleton_mix",
            "cf_bidir_skeleton's forwards, scored as the mixture over fills -log mean_f Q_f(x) per window",
            True,
            _cf_bidir_skeleton_mix,
            _order_cf_mix,
            expensive=True,
            report_rank=5,
        ),
    )
}
VALID: dict[str, bool] = {name: d.valid for name, d in DECODERS.items()}


def decoders_where(*, valid: bool | None = None, family: str | None = None,
                   expensive: bool | None = None) -> tuple[str, ...]:
    """The names of the decoders with the given fields (None: any), in report order (report_rank).

    What eval_cf (expensive=True: opt-in only) and the reports (valid=True: the code lengths;
    family="bidir": the bidirectional pass's table) read, so a new decoder is declared in DECODERS
    alone."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown decoder family {family!r}; known: {FAMILIES}")
    chosen = [d for d in DECODERS.values()
              if (valid is None or d.valid == valid) and (family is None or d.family == family)
              and (expensive is None or d.expensive == expensive)]
    return tuple(d.name for d in sorted(chosen, key=lambda d: d.report_rank))


# ----------------------------------------------------------------------------- public API


def _check_args(decoder: str, T: int, stride: int, rounds: int, n_random: int = 1) -> Decoder:
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; known: {sorted(DECODERS)}")
    if int(stride) != stride or stride < 2:
        raise ValueError(f"stride must be an integer >= 2, got {stride!r}")
    if int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    if int(n_random) != n_random or n_random < 1:
        raise ValueError(f"n_random must be an integer >= 1, got {n_random!r}")
    if int(T) != T or T < 1:
        raise ValueError(f"need at least one target (T >= 1), got T={T!r}")
    return DECODERS[decoder]


def decoding_order(decoder: str, T: int, stride: int = 2, rounds: int = 2) -> list[list[int]]:
    """The stages of target positions in the order `decoder` claims to decode them.

    A token of stage k may be scored only from the context and tokens of stages < k.
    """
    spec = _check_args(decoder, T, stride, rounds)
    if spec.order is None:
        raise ValueError(f"{decoder} decodes in an adaptive order (one per window): see confidence_order")
    return spec.order(make_schedule(T, stride, rounds))


def decode_parts(
    scorer: Scorer,
    seqs: np.ndarray,
    decoder: str,
    settings: CFSettings,
    *,
    fills: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-target NLL of `decoder` and which pass scored each target.

    Returns {"nll": float64 (B, T), "pass1": bool (T,), "pass2": bool (T,)}; the two masks
    partition the target positions (for ar, pass 1 is everything). One scorer call per
    pass / round / fill over the whole batch (cf_bidir_skeleton: per skeleton token too).
    settings: the vocabulary, schedule and fills (CFSettings). fills: an explicit fill array
    (1 + rounds, n_random, T) instead of settings.fills(T); settings.n_random must equal its
    second axis. The normalization audit uses it to score each fill realization f of a draw as
    its own one-fill code (fills[:, f:f+1]).
    settings.mask_id: absorbing noise; every hidden position holds this token (mask_fills),
    n_random must be 1 and an explicit fills array may contain it. The targets stay in
    [0, vocab_size).
    """
    vocab_size, stride, rounds, n_random = settings.vocab_size, settings.stride, settings.rounds, settings.n_random
    mask_id = settings.mask_id
    seqs = np.asarray(seqs)
    if seqs.ndim != 2 or not np.issubdtype(seqs.dtype, np.integer):
        raise ValueError(f"seqs must be a 2-D integer array (B, T+1), got {seqs.dtype} {seqs.shape}")
    if int(vocab_size) != vocab_size or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    T = seqs.shape[1] - 1
    spec = _check_args(decoder, T, stride, rounds, n_random)
    if seqs.size and (seqs.min() < 0 or seqs.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}), got [{seqs.min()}, {seqs.max()}]")
    seqs = np.ascontiguousarray(seqs, dtype=np.int64)
    prev, x = np.ascontiguousarray(seqs[:, :-1]), np.ascontiguousarray(seqs[:, 1:])

    schedule = make_schedule(T, stride, rounds)
    if mask_id is not None and mask_id < vocab_size:
        raise ValueError(f"mask_id {mask_id} lies inside the vocabulary [0, {vocab_size})")
    if fills is None:
        fills = settings.fills(T)
    else:
        fills = np.asarray(fills)
        if fills.shape != (1 + rounds, n_random, T) or not np.issubdtype(fills.dtype, np.integer):
            raise ValueError(f"fills must be an integer array {(1 + rounds, n_random, T)}, got {fills.dtype} "
                             f"{fills.shape}")
        fill_ids = vocab_size if mask_id is None else mask_id + 1
        if fills.size and (fills.min() < 0 or fills.max() >= fill_ids):
            raise ValueError(f"fill ids must lie in [0, {fill_ids})")
        fills = fills.astype(np.int64)
    nll = np.full(x.shape, np.nan, dtype=np.float64)
    pass1 = spec.run(scorer, prev, x, schedule, fills, nll)
    return {"nll": nll, "pass1": pass1, "pass2": ~pass1}


def decode_nll(
    scorer: Scorer,
    seqs: np.ndarray,
    decoder: str,
    settings: CFSettings,
    *,
    fills: np.ndarray | None = None,
) -> np.ndarray:
    """float64 (B, T): the NLL in nats `decoder` assigns to each target seqs[:, 1:]."""
    return decode_parts(scorer, seqs, decoder, settings, fills=fills)["nll"]
