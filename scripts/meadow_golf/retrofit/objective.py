"""The retrofit's joint objective: AR cross-entropy + w x absorbing-mask denoising cross-entropy.

A training row is seq = (c, x_1 .. x_T): T + 1 tokens, c a context token never masked.
  AR:   the causal pass on (c, x_1 .. x_{T-1}) predicts x_1 .. x_T (position i predicts token i+1).
  DN:   x is corrupted by absorbing noise: row b gets a mask time t_b in (0, 1], each x_i is replaced
        by the mask token with probability t_b; the bidirectional pass predicts the masked x_i.
        Weight per masked token 1 / t_b, divided by B * T: the MDLM bound with the linear schedule
        (elbo.py), so the training loss is the per-token ELBO that the evaluators report. Times are
        stratified over the GLOBAL batch's rows (t_b = 1 - (b + u) / n_rows, one u per step), as
        train_cdm.py's --cdm_loss elbo draws them, so the noise does not depend on the rank count.
  loss = AR + w * DN.

Two conventions for where the bidirectional pass reads its prediction (--convention):
  shift (default): the input is (c, noisy x) and hidden row i predicts x_{i+1}, the slot the
        causal head already predicts: the base's head and last layers keep their job (the next
        token) and the adapter only has to let later positions in. This is how AR-to-diffusion
        adaptation keeps a pretrained head (DiffuLLaMA / DiffuGPT, Dream 7B).
  inplace: the input is noisy x and row i predicts x_i at its own position (our from-scratch joint
        model's convention, model.py): the head must learn to read "this slot" instead of "the
        next one", a larger change for a pretrained causal model.
Evaluation follows the same convention (scoring.py): under shift, a fixed start token stands in
for c when no true context is given.

Cross-entropy is chunked along the sequence and each chunk's logits are recomputed in the
backward (torch.utils.checkpoint): with Qwen3.5's 248,320-token head the logits are otherwise the
largest tensor of the step (B * T * V floats).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CONVENTIONS = ("shift", "inplace")


def mask_times(n_rows: int, gen: torch.Generator, device) -> torch.Tensor:
    """(n_rows,) stratified mask times in (0, 1]: t_b = 1 - (b + u) / n_rows, u ~ U[0, 1)."""
    u = torch.rand((), generator=gen, device=device)
    return 1.0 - (torch.arange(n_rows, device=device, dtype=torch.float32) + u) / n_rows


def corrupt(x: torch.Tensor, mask_id: int, gen: torch.Generator, rank: int = 0,
            world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy x, weight) for x (B, T) of this rank: weight = mask / t (0 where unmasked).
    The draws cover the global batch (world_size * B rows); this rank keeps its own rows."""
    B, T = x.shape
    n_rows = world_size * B
    t = mask_times(n_rows, gen, x.device)
    mask_all = torch.rand((n_rows, T), generator=gen, device=x.device) < t[:, None]
    rows = slice(rank * B, (rank + 1) * B)
    mask = mask_all[rows]
    noisy = torch.where(mask, torch.full_like(x, mask_id), x)
    return noisy, mask.float() / t[rows][:, None]


def denoise_inputs(seq: torch.Tensor, noisy: torch.Tensor, convention: str) -> tuple[torch.Tensor, slice]:
    """(bidirectional input, the hidden rows that predict x_1..x_T) under a convention."""
    if convention == "shift":
        return torch.cat([seq[:, :1], noisy], dim=1), slice(0, noisy.size(1))
    return noisy, slice(0, noisy.size(1))


def _chunk_ce(head_fn, h: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    logits = head_fn(h)
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
    return (ce * w.reshape(-1)).sum()


def weighted_ce_sum(head_fn, h: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                    chunk: int = 256) -> torch.Tensor:
    """sum_i weights_i * CE(head_fn(h_i), targets_i) over (B, T), chunked along T; under grad each
    chunk's logits are recomputed in the backward instead of being kept."""
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.size(1), chunk):
        sl = slice(s, s + chunk)
        if not weights[:, sl].any():
            continue
        args = (h[:, sl], targets[:, sl], weights[:, sl])
        if torch.is_grad_enabled() and h.requires_grad:
            total = total + checkpoint(_chunk_ce, head_fn, *args, use_reentrant=False)
        else:
            total = total + _chunk_ce(head_fn, *args)
    return total
