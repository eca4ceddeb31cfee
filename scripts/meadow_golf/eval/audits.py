"""Audits that expose a decoder whose NLL is not a code length (METHOD.md §6); numpy only.

order_audit:          in the decoder's own order, changing tokens decoded later must not change
                      the score of any token decoded earlier; nor may a token's score read
                      itself or another token of its own stage.
per_fill_normalization_audit:  for a tiny vocabulary and length, each fill realization f of
                      an n_random = F decode, scored as its own one-fill code, must give
                      probabilities exp(-total NLL) that sum to exactly 1 (two-sided, 1e-9)
                      over EVERY sequence, for a valid decoder and a normalized scorer.
normalization_audit:  the weaker AM-GM line: the F-fill mean's sum must be <= 1.
prefix_change:        a helper for the attention-leakage check of a backend: how much do the
                      logits of positions before / after a split change between two forwards?

Both audits rely on cf.py's fills being the same for every row of a batch and independent of
the tokens: a perturbed copy of a window is decoded with exactly the fills of the original.
"""

from __future__ import annotations

import math

import numpy as np

from meadow_golf.eval import cf


def _decode_in_chunks(scorer, seqs, scored_targets, decoder, max_rows, settings: cf.CFSettings) -> np.ndarray:
    """decode_nll over row chunks, the scorer always asked about `scored_targets`.

    Chunking is sound because a window's score ignores the other rows of its batch. Replacing
    the targets lets a check change the tokens a decoder *reads* while asking the log-prob of
    the original tokens (decoders build inputs from seqs and pass seqs[:, 1:] as targets).
    """
    parts = []
    for start in range(0, seqs.shape[0], max_rows):
        fixed_targets = scored_targets[start : start + max_rows]

        def scorer_of_fixed_targets(inputs, is_causal, targets, fixed_targets=fixed_targets):
            return scorer(inputs, is_causal, fixed_targets)

        chunk = seqs[start : start + max_rows]
        parts.append(cf.decode_nll(scorer_of_fixed_targets, chunk, decoder, settings))
    return np.concatenate(parts, axis=0)


def _perturbed(seqs: np.ndarray, positions: np.ndarray, vocab_size: int, rng) -> np.ndarray:
    """Copy of seqs with the targets at x `positions` (column p+1) changed to different tokens."""
    out = seqs.copy()
    columns = positions + 1
    shift = rng.integers(1, vocab_size, size=(seqs.shape[0], columns.size))
    out[:, columns] = (out[:, columns] + shift) % vocab_size
    return out


def order_audit(
    scorer,
    seqs,
    decoder: str,
    settings: cf.CFSettings,
    *,
    n_trials: int = 2,
    perturb_seed: int = 0,
    tolerance: float = 1e-6,
    max_rows: int = 4096,
) -> dict:
    """Check that every score reads only tokens of strictly earlier stages.

    For each trial and each stage k of decoding_order(decoder), two perturbed copies of seqs
    are decoded (context column 0 is never changed):
      "later": every target of stages > k is replaced by a different random token; the NLL of
               every target of stages <= k must not change.
      "self":  every target of stages >= k is replaced, but the scorer is still asked the
               log-prob of the ORIGINAL targets; the NLL of stages <= k must not change. This
               catches a token that reads itself or another token of its own stage, which no
               change of later tokens alone can reveal.
    `settings` is what cf decodes with (vocabulary, schedule, fills); `perturb_seed` draws the
    replacement tokens. All copies are decoded in batches of at most max_rows rows.
    A numpy scorer gives bit-identical numbers, so max_change is exactly 0 for a valid
    decoder; `tolerance` only allows for float noise of accelerator backends across batches.
    """
    seqs = np.ascontiguousarray(np.asarray(seqs), dtype=np.int64)
    if seqs.ndim != 2:
        raise ValueError(f"seqs must be (B, T+1), got shape {seqs.shape}")
    vocab_size = settings.vocab_size
    if vocab_size < 2:
        raise ValueError("the order audit needs vocab_size >= 2 to change a token")
    B, T = seqs.shape[0], seqs.shape[1] - 1
    stages = cf.decoding_order(decoder, T, settings.stride, settings.rounds)
    stage_of = np.empty(T, dtype=np.int64)
    for k, stage in enumerate(stages):
        stage_of[stage] = k
    positions = np.arange(T)
    rng = np.random.default_rng(perturb_seed)
    original_targets = seqs[:, 1:]

    copies, scored_targets = [seqs], [original_targets]
    checks = []  # (trial, stage, kind, checked mask (T,))
    for trial in range(n_trials):
        for k in range(len(stages)):
            later = positions[stage_of > k]
            if later.size:
                copy = _perturbed(seqs, later, vocab_size, rng)
                copies.append(copy)
                scored_targets.append(copy[:, 1:])
                checks.append((trial, k, "later", stage_of <= k))
            copies.append(_perturbed(seqs, positions[stage_of >= k], vocab_size, rng))
            scored_targets.append(original_targets)
            checks.append((trial, k, "self", stage_of <= k))

    nll = _decode_in_chunks(scorer, np.concatenate(copies), np.concatenate(scored_targets), decoder, max_rows, settings)
    base = nll[:B]

    max_change, worst = 0.0, None
    stage_max = np.zeros(len(stages))
    kind_max = {"later": 0.0, "self": 0.0}
    for index, (trial, k, kind, checked) in enumerate(checks):
        change = np.abs(nll[(index + 1) * B : (index + 2) * B] - base)[:, checked]
        largest = float(change.max()) if change.size else 0.0
        stage_max[k] = max(stage_max[k], largest)
        kind_max[kind] = max(kind_max[kind], largest)
        if largest > max_change:
            row, col = np.unravel_index(int(change.argmax()), change.shape)
            max_change = largest
            worst = dict(trial=trial, stage=k, kind=kind, row=int(row),
                         position=int(positions[checked][col]))
    return dict(
        decoder=decoder,
        passed=bool(max_change <= tolerance),
        max_change=max_change,
        tolerance=tolerance,
        worst=worst,
        stage_max_change=stage_max.tolist(),
        kind_max_change=kind_max,
        n_stages=len(stages),
        n_checks=len(checks),
        n_rows=int(nll.shape[0]),
        claimed_valid=cf.VALID[decoder],
    )


def adaptive_order_audit(
    scorer,
    seqs,
    settings: cf.CFSettings,
    *,
    perturb_seed: int = 0,
    tolerance: float = 1e-6,
) -> dict:
    """The order audit of bidir_confidence, whose order is chosen per window while decoding.

    For each fill f and each step k of each window's own realized order (cf.confidence_order):
      "later": the targets decoded after step k are changed; the positions chosen at steps <= k
               and their log-probs must not change (the choice and the code read only decoded
               tokens);
      "self":  the targets decoded at steps >= k are changed in the inputs while the original
               tokens are scored; again nothing up to step k may change.
    Exactly 0 for a numpy scorer; `tolerance` allows for accelerator float noise.
    """
    vocab_size, n_random = settings.vocab_size, settings.n_random
    seqs = np.ascontiguousarray(np.asarray(seqs), dtype=np.int64)
    if seqs.ndim != 2 or vocab_size < 2:
        raise ValueError("seqs must be (B, T+1) and vocab_size >= 2")
    x = seqs[:, 1:]
    B, T = x.shape
    # The fills decode_parts draws for the same seed (rounds only shapes the draw; row 0 is used).
    fills = settings.fills(T)
    rng = np.random.default_rng(perturb_seed)
    rows = np.arange(B)[:, None]
    max_change, order_moved, worst = 0.0, False, None
    for f in range(n_random):
        order, logp = cf.confidence_order(scorer, x, fills[0, f])
        step_of = np.empty((B, T), dtype=np.int64)
        step_of[rows, order] = np.arange(T)[None, :]
        for k in range(T):
            for kind, changed in (("later", step_of > k), ("self", step_of >= k)):
                if not changed.any():
                    continue
                shift = rng.integers(1, vocab_size, size=x.shape)
                perturbed = np.where(changed, (x + shift) % vocab_size, x)
                targets = perturbed if kind == "later" else x
                new_order, new_logp = cf.confidence_order(scorer, perturbed, fills[0, f], targets=targets)
                kept = order[:, : k + 1]
                if not np.array_equal(new_order[:, : k + 1], kept):
                    order_moved = True
                change = float(np.abs(np.take_along_axis(new_logp, kept, 1) - np.take_along_axis(logp, kept, 1)).max())
                if change > max_change:
                    max_change, worst = change, dict(fill=f, step=k, kind=kind)
    return dict(
        decoder="bidir_confidence",
        passed=bool(max_change <= tolerance and not order_moved),
        max_change=max_change,
        order_moved=order_moved,
        tolerance=tolerance,
        worst=worst,
        claimed_valid=cf.VALID["bidir_confidence"],
    )


def all_sequences(vocab_size: int, T: int) -> np.ndarray:
    """Every target sequence of length T over the vocabulary, int64 (V**T, T), lexicographic."""
    index = np.arange(vocab_size**T, dtype=np.int64)
    powers = vocab_size ** np.arange(T - 1, -1, -1, dtype=np.int64)
    return (index[:, None] // powers[None, :]) % vocab_size


def normalization_audit(
    scorer,
    decoder: str,
    settings: cf.CFSettings,
    *,
    T: int,
    context_token: int = 0,
    batch_rows: int = 8192,
    max_sequences: int = 2_000_000,
) -> dict:
    """Sum of exp(-total NLL) over all V**T target sequences (column 0 = context_token).

    The math (see cf.py): a valid decoder with n_random = 1 is a product of normalized
    conditionals in one order, so the sum is exactly 1 (up to float rounding); with
    n_random > 1 each term is a geometric mean over fills of normalized distributions, so the
    sum is <= 1 (AM-GM). A sum above 1 means the NLL is not a code length. The fills are the
    same for every enumerated sequence because cf draws them from `seed` alone.
    """
    vocab_size = settings.vocab_size
    n_sequences = vocab_size**T
    if n_sequences > max_sequences:
        raise ValueError(f"{vocab_size}**{T} = {n_sequences} sequences > max_sequences={max_sequences}")
    if not 0 <= context_token < vocab_size:
        raise ValueError(f"context_token must lie in [0, {vocab_size}), got {context_token}")
    targets = all_sequences(vocab_size, T)
    seqs = np.concatenate([np.full((n_sequences, 1), context_token, dtype=np.int64), targets], axis=1)
    total, largest = _kraft_sum(scorer, seqs, decoder, batch_rows, settings)
    return dict(
        decoder=decoder,
        total_prob=total,
        n_sequences=n_sequences,
        max_sequence_prob=largest,
        vocab_size=vocab_size,
        T=T,
        n_random=settings.n_random,
        claimed_valid=cf.VALID[decoder],
    )


def _kraft_sum(scorer, seqs, decoder, batch_rows, settings: cf.CFSettings, fills=None) -> tuple[float, float]:
    """(sum over rows of exp(-total NLL), the largest single term)."""
    batch_sums, largest = [], 0.0
    for start in range(0, seqs.shape[0], batch_rows):
        nll = cf.decode_nll(scorer, seqs[start : start + batch_rows], decoder, settings, fills=fills)
        probs = np.exp(-nll.sum(axis=1))
        batch_sums.append(float(probs.sum()))
        largest = max(largest, float(probs.max()))
    return math.fsum(batch_sums), largest


def per_fill_normalization_audit(
    scorer,
    decoder: str,
    settings: cf.CFSettings,
    *,
    T: int,
    context_token: int = 0,
    tolerance: float = 1e-9,
    batch_rows: int = 8192,
    max_sequences: int = 2_000_000,
) -> dict:
    """The sharp normalization audit: each of the n_random fill realizations, as its own code.

    The fills of a decode with n_random = F are draw_fills(seed, ..., F); fill f alone
    (fills[:, f:f+1], scored with n_random = 1) defines a decoder whose probabilities are a
    product of normalized conditionals in one order if the decoder is valid, so summed over
    all V**T sequences they give 1 up to float rounding. The check is two-sided: a sum below
    1 is as much a sign of a broken decoder (or scorer) as a sum above. The AM-GM bound of
    normalization_audit (the F-fill mean, sum <= 1) is weaker: a leak that raises one fill's
    sum and lowers another's can hide under it; this audit cannot miss it.
    """
    vocab_size, n_random = settings.vocab_size, settings.n_random
    n_sequences = vocab_size**T
    if n_sequences > max_sequences:
        raise ValueError(f"{vocab_size}**{T} = {n_sequences} sequences > max_sequences={max_sequences}")
    if not 0 <= context_token < vocab_size:
        raise ValueError(f"context_token must lie in [0, {vocab_size}), got {context_token}")
    # A mask fill (mask_id, absorbing noise) has one realization: n_random must be 1.
    fills = settings.fills(T)
    seqs = np.concatenate([np.full((n_sequences, 1), context_token, dtype=np.int64), all_sequences(vocab_size, T)],
                          axis=1)
    totals = []
    for f in range(n_random):
        one_fill = settings.replace(n_random=1)
        totals.append(_kraft_sum(scorer, seqs, decoder, batch_rows, one_fill, fills=fills[:, f : f + 1])[0])
    deviation = max(abs(total - 1.0) for total in totals)
    return dict(
        decoder=decoder,
        fill_totals=totals,
        max_abs_deviation=deviation,
        tolerance=tolerance,
        passed=bool(deviation <= tolerance),
        n_sequences=n_sequences,
        vocab_size=vocab_size,
        T=T,
        n_random=n_random,
        claimed_valid=cf.VALID[decoder],
    )


def prefix_change(logits_a, logits_b, split: int, axis: int = -2) -> tuple[float, float]:
    """(max |a - b| over positions < split, max |a - b| over positions >= split).

    logits_* are (..., T, V) by default (positions on `axis`). For a causal forward of two
    inputs that agree before `split`, the prefix difference must be 0 (up to float noise)
    while the suffix difference is typically > 0; a bidirectional forward changes both.
    An empty side reports 0.0.
    """
    a = np.moveaxis(np.asarray(logits_a, dtype=np.float64), axis, 0)
    b = np.moveaxis(np.asarray(logits_b, dtype=np.float64), axis, 0)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    diff = np.abs(a - b)
    prefix, suffix = diff[:split], diff[split:]
    return (float(prefix.max()) if prefix.size else 0.0, float(suffix.max()) if suffix.size else 0.0)
