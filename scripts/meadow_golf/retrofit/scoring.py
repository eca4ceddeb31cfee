"""Log-probabilities of a retrofitted model for the package's decoders, and line code lengths.

RetrofitScorer is a cf.py scorer (inputs, is_causal, targets) -> log-probs: so every decoder of
cf.py (ar, cf_valid, bidir_l2r, ...) and the ELBO of elbo.py run on a retrofit unchanged.
Distributions are over the real tokens [0, n_real) (base.py), and the mask token is n_real, so
the decoders' `vocab_size` is n_real and their `mask_id` the mask token.
- causal rows: row i is the distribution of the token after inputs[:, i] (adapter on, or off:
  then exactly the base).
- bidirectional rows: row i scores the token AT position i. Under the shift convention the
  input is (start token, inputs) and hidden row i (which predicts the next slot) is read for
  position i; under inplace the row of position i itself.

Line code lengths (nats) of a missing span `line` between `prefix` and `suffix` (token ids):
- causal_line_nll: sum_j -log p(line_j | prefix, line_<j), the causal chain rule; the suffix is
  not read. A valid code of the line's tokens given its length.
- bidir_line_nll: left to right, position j of the line is scored by a bidirectional forward
  of (prefix, line_<j, mask * (L - j), suffix): each factor reads only the prefix, the suffix,
  the earlier line tokens and the (known) length L, so the product is normalized over the L
  tokens: a valid code of the line given prefix, suffix and L (cf.py's argument, one order).
Both are given L; a complete code adds the code of L, the same for both (evaluate.py reports it).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from meadow_golf.retrofit import bidir
from meadow_golf.retrofit.base import Base


class RetrofitScorer:
    def __init__(self, model, base: Base, *, convention: str, adapter: bool = True, reverse: bool = False,
                 device=None, autocast=None):
        self.model, self.base, self.convention = model, base, convention
        self.adapter, self.reverse = adapter, reverse
        self.device = device or next(model.parameters()).device
        self.autocast = autocast

    def _context(self):
        stack = contextlib.ExitStack()
        if not self.adapter and hasattr(self.model, "disable_adapter"):
            stack.enter_context(self.model.disable_adapter())
        if self.autocast is not None:
            stack.enter_context(self.autocast)
        return stack

    @torch.no_grad()
    def log_probs(self, inputs: np.ndarray, is_causal: bool) -> torch.Tensor:
        """(B, T, n_real) float32 log-probabilities of each row (see the module docstring)."""
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.long, device=self.device)
        with self._context():
            if is_causal:
                logits = bidir.logits(self.model, self.base, x, causal=True)
            elif self.convention == "shift":
                start = torch.full_like(x[:, :1], self.base.start_id)
                logits = bidir.logits(self.model, self.base, torch.cat([start, x], 1), causal=False,
                                      reverse=self.reverse)[:, :-1]
            else:
                logits = bidir.logits(self.model, self.base, x, causal=False, reverse=self.reverse)
        return torch.log_softmax(logits.float(), dim=-1)

    def __call__(self, inputs: np.ndarray, is_causal: bool, targets: np.ndarray) -> np.ndarray:
        y = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=self.device)
        logp = self.log_probs(inputs, is_causal).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return logp.double().cpu().numpy()

    def max_logp(self, inputs: np.ndarray, is_causal: bool) -> np.ndarray:
        return self.log_probs(inputs, is_causal).amax(dim=-1).double().cpu().numpy()

    # ------------------------------------------------------------------ spans

    @torch.no_grad()
    def bidir_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, S, n_real) log-probs where row p scores the token AT position p of ids (B, S),
        bidirectional. Under shift, row p is hidden row p - 1 (row 0 reads the start token)."""
        with self._context():
            if self.convention == "shift":
                start = torch.full_like(ids[:, :1], self.base.start_id)
                logits = bidir.logits(self.model, self.base, torch.cat([start, ids], 1), causal=False,
                                      reverse=self.reverse)[:, :-1]
            else:
                logits = bidir.logits(self.model, self.base, ids, causal=False, reverse=self.reverse)
        return torch.log_softmax(logits.float(), dim=-1)

    @torch.no_grad()
    def causal_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, S, n_real) causal log-probs: row p is the distribution of the token after ids[:, p]."""
        with self._context():
            logits = bidir.logits(self.model, self.base, ids, causal=True)
        return torch.log_softmax(logits.float(), dim=-1)


def causal_line_nll(scorer: RetrofitScorer, prefix: list[int], line: list[int]) -> np.ndarray:
    """Per-token NLL (nats, (L,)) of line given prefix, causal chain rule (prefix must be non-empty)."""
    if not prefix or not line:
        raise ValueError("causal_line_nll needs a non-empty prefix and line")
    ids = torch.tensor([prefix + line], device=scorer.device)
    logp = scorer.causal_rows(ids[:, :-1])[0]
    rows = torch.arange(len(prefix) - 1, len(prefix) + len(line) - 1, device=scorer.device)
    return -logp[rows, torch.tensor(line, device=scorer.device)].double().cpu().numpy()


def bidir_line_nll(scorer: RetrofitScorer, prefix: list[int], line: list[int], suffix: list[int],
                   batch: int = 32, fill: list[int] | None = None) -> np.ndarray:
    """Per-token NLL (nats, (L,)) of line given prefix, suffix and L: the left-to-right
    bidirectional chain rule of the module docstring (L forwards, batched). fill: the token each
    not-yet-decoded slot holds (default the mask token; a model trained with uniform noise gets
    fixed random tokens, drawn independently of the data, which keeps the code valid)."""
    L, P = len(line), len(prefix)
    if L == 0:
        raise ValueError("bidir_line_nll needs a non-empty line")
    fill = [scorer.base.mask_id] * L if fill is None else list(fill)
    rows = [prefix + line[:j] + fill[j:L] + suffix for j in range(L)]
    out = np.empty(L)
    for s in range(0, L, batch):
        ids = torch.tensor(rows[s:s + batch], device=scorer.device)
        logp = scorer.bidir_rows(ids)
        for k, j in enumerate(range(s, min(L, s + batch))):
            out[j] = -float(logp[k, P + j, line[j]])
    return out


def length_code(lengths_train: list[int], max_len: int) -> np.ndarray:
    """-log P(L) in nats for L = 0..max_len: the training lines' length counts + 1 (Laplace), a
    distribution fixed before any evaluation line is seen (so a valid code of L)."""
    counts = np.ones(max_len + 1)
    for n in lengths_train:
        counts[min(int(n), max_len)] += 1
    return -np.log(counts / counts.sum())
