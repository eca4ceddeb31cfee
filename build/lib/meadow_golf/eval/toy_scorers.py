"""Small numpy scorers with exactly normalized distributions, for tests, audits and demos.

Every scorer follows the contract of cf.py:
    scorer(inputs: int64 (B, T), is_causal: bool, targets: int64 (B, T)) -> float64 (B, T)
with the log-probability of targets[:, i] at row i (causal: the token after inputs[:, i];
bidirectional: the token at position i). Every row is a distribution normalized over the
vocabulary, so the normalization audit of a valid decoder sums to exactly 1.
"""

from __future__ import annotations

import numpy as np


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _pick(log_probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log_probs (B, T, V), targets (B, T) -> (B, T)."""
    return np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


class UniformScorer:
    """Every row is uniform over the vocabulary: NLL = log V for every decoder."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __call__(self, inputs, is_causal, targets):
        return np.full(np.shape(targets), -np.log(self.vocab_size))


class UnigramScorer:
    """Every row is the same distribution `probs`, whatever the inputs.

    No token reads another, so every decoder (cf_published included) gives the same NLL and
    is normalized: a leak needs a scorer that couples tokens.
    """

    def __init__(self, probs):
        probs = np.asarray(probs, dtype=np.float64)
        self.log_probs = np.log(probs / probs.sum())

    def __call__(self, inputs, is_causal, targets):
        return self.log_probs[np.asarray(targets)]


def max_logp_by_enumeration(scorer, inputs, is_causal: bool, vocab_size: int) -> np.ndarray:
    """(B, T): the largest log-probability of each row over a small vocabulary, by scoring every
    token as the target (what cf.confidence_order needs from a scorer without full rows)."""
    inputs = np.asarray(inputs)
    every = [scorer(inputs, is_causal, np.full(inputs.shape, v)) for v in range(vocab_size)]
    return np.max(every, axis=0)


class MarkovScorer:
    """A first-order Markov chain with transition matrix P (rows sum to 1).

    causal row i:        P(next = t | inputs[i]) = P[inputs[i], t].
    bidirectional row i: the exact posterior of the chain at position i given its neighbours,
        P(x_i = t | x_{i-1}, x_{i+1}) = P[x_{i-1}, t] P[t, x_{i+1}] / sum_u P[x_{i-1}, u] P[u, x_{i+1}],
        with the prior `initial` in place of P[x_{i-1}, .] at i = 0 and no right factor at
        i = T-1. Row i never reads inputs[i] itself.
    Neighbours are coupled, which is what lets cf_published's pass 1 and pass 2 see each other.
    """

    def __init__(self, transition, initial=None):
        transition = np.asarray(transition, dtype=np.float64)
        self.transition = transition / transition.sum(axis=1, keepdims=True)
        V = self.transition.shape[0]
        initial = np.full(V, 1.0 / V) if initial is None else np.asarray(initial, dtype=np.float64)
        self.initial = initial / initial.sum()

    @classmethod
    def sticky(cls, vocab_size: int, stay: float = 0.7, seed: int = 0) -> "MarkovScorer":
        """A chain that repeats its token with probability `stay`, else moves at random."""
        rng = np.random.default_rng(seed)
        moves = rng.dirichlet(np.ones(vocab_size - 1), size=vocab_size)
        transition = np.zeros((vocab_size, vocab_size))
        for a in range(vocab_size):
            transition[a, np.arange(vocab_size) != a] = (1.0 - stay) * moves[a]
            transition[a, a] = stay
        return cls(transition)

    def __call__(self, inputs, is_causal, targets):
        inputs, targets = np.asarray(inputs), np.asarray(targets)
        P = self.transition
        if is_causal:
            return np.log(P[inputs, targets])
        B, T = inputs.shape
        # weight[b, i, t] = (left factor) * (right factor), then normalize over t.
        weight = np.empty((B, T, P.shape[0]))
        weight[:, 0] = self.initial
        weight[:, 1:] = P[inputs[:, :-1]]
        weight[:, :-1] *= P.T[inputs[:, 1:]]
        return _pick(np.log(weight / weight.sum(axis=-1, keepdims=True)), targets)

    def max_logp(self, inputs, is_causal):
        """(B, T): each row's largest log-probability (the confidence of cf.confidence_order)."""
        return max_logp_by_enumeration(self, inputs, is_causal, self.transition.shape[0])


class MixingScorer:
    """A random "network": embeddings mixed over a window, tanh, output matrix, softmax.

    causal row i reads inputs[i - width + 1 .. i]; bidirectional row i reads
    inputs[i - width .. i + width] (its own position included). Rich enough that any decoder
    bug (wrong input, wrong row, wrong fill) changes the numbers.
    """

    def __init__(self, vocab_size: int, dim: int = 8, width: int = 3, seed: int = 0, mask_token: bool = False):
        rng = np.random.default_rng(seed)
        self.vocab_size, self.width = vocab_size, width
        # mask_token: one extra input-only embedding row (id vocab_size), as GPTConfig.mask_token;
        # the output matrix still has vocab_size columns, so the mask is never predicted.
        self.mask_id = vocab_size if mask_token else None
        self.embed = rng.normal(size=(vocab_size + int(mask_token), dim))
        self.causal_mix = rng.normal(size=width)  # weight of offset -k, k = 0..width-1
        self.bidir_mix = rng.normal(size=2 * width + 1)  # weight of offset k = -width..width
        self.out = rng.normal(size=(dim, vocab_size)) * 1.5

    def _mix(self, inputs, offsets, weights):
        emb = self.embed[inputs]  # (B, T, d)
        T = inputs.shape[1]
        hidden = np.zeros_like(emb)
        for offset, w in zip(offsets, weights):
            # hidden[:, i] += w * emb[:, i + offset] where 0 <= i + offset < T
            lo, hi = max(0, -offset), min(T, T - offset)
            if lo < hi:
                hidden[:, lo:hi] += w * emb[:, lo + offset : hi + offset]
        return hidden

    def log_probs(self, inputs, is_causal):
        """(B, T, V) log-probabilities of every row."""
        inputs = np.asarray(inputs)
        if is_causal:
            hidden = self._mix(inputs, [-k for k in range(self.width)], self.causal_mix)
        else:
            hidden = self._mix(inputs, range(-self.width, self.width + 1), self.bidir_mix)
        return _log_softmax(np.tanh(hidden) @ self.out)

    def __call__(self, inputs, is_causal, targets):
        return _pick(self.log_probs(inputs, is_causal), np.asarray(targets))

    def max_logp(self, inputs, is_causal):
        """(B, T): each row's largest log-probability (the confidence of cf.confidence_order)."""
        return self.log_probs(inputs, is_causal).max(axis=-1)


class MarkovMaskScorer:
    """A first-order Markov chain whose bidirectional rows are its EXACT conditionals given every
    non-mask input: absorbing-noise inputs, where mask_id marks a hidden position.

    bidirectional row i: P(x_i = t | x_j for every j != i with inputs[j] != mask_id), by
        forward-backward over the chain (initial distribution `initial` at position 0); row i
        never reads inputs[i]. Being the conditionals of one joint P(x) = initial[x_0] prod
        P[x_{j-1}, x_j], every chain-rule order gives -log P(x) exactly, and so does the
        absorbing ELBO (elbo.py): the tight case of the bound.
    causal row i: P[inputs[i], t] (a mask input is refused: the causal pass never sees one).
    """

    def __init__(self, transition, initial, mask_id: int):
        transition = np.asarray(transition, dtype=np.float64)
        self.transition = transition / transition.sum(axis=1, keepdims=True)
        initial = np.asarray(initial, dtype=np.float64)
        self.initial = initial / initial.sum()
        self.mask_id = int(mask_id)
        if self.mask_id < self.transition.shape[0]:
            raise ValueError("mask_id must lie outside the vocabulary")

    def __call__(self, inputs, is_causal, targets):
        inputs, targets = np.asarray(inputs), np.asarray(targets)
        P = self.transition
        if is_causal:
            return np.log(P[inputs, targets])
        B, T = inputs.shape
        V = P.shape[0]
        # evidence[b, j, v] = 1 if position j is hidden or holds v: the likelihood of the input at j.
        hidden = inputs == self.mask_id
        evidence = np.where(hidden[..., None], 1.0, np.eye(V)[np.where(hidden, 0, inputs)])
        # before[b, i] = P(x_i = v | evidence at j < i), after[b, i] ∝ P(evidence at j > i | x_i = v);
        # each normalized as it goes (only ratios over v matter).
        before = np.empty((B, T, V))
        after = np.empty((B, T, V))
        before[:, 0] = self.initial
        for i in range(1, T):
            step = (before[:, i - 1] * evidence[:, i - 1]) @ P
            before[:, i] = step / step.sum(axis=1, keepdims=True)
        after[:, T - 1] = 1.0
        for i in range(T - 2, -1, -1):
            step = (evidence[:, i + 1] * after[:, i + 1]) @ P.T
            after[:, i] = step / step.sum(axis=1, keepdims=True)
        weight = before * after
        return _pick(np.log(weight / weight.sum(axis=-1, keepdims=True)), targets)

    def max_logp(self, inputs, is_causal):
        """(B, T): each row's largest log-probability (the confidence of cf.confidence_order)."""
        return max_logp_by_enumeration(self, inputs, is_causal, self.transition.shape[0])
