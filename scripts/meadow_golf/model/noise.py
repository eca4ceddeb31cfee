"""The denoising pass's noise in one place: the kinds, the mask rates, the corruption of both
trainers and the ELBO loss's mask times (METHOD.md §4.1).

To add or change a noise, this is the file: the trainers (train_cdm.py, train_cdm_mlx.py) call
corrupt_torch / corrupt_mlx with `--noise` and `--cdm_loss` as given, the model learns from
has_mask_token whether it needs the mask token's embedding row, and the evaluator reads a
checkpoint's noise back with noise_of_config.

Kinds (--noise; the first is the original's):
  uniform:   a corrupted position gets a token uniform on [0, V) (D3PM-uniform).
  absorbing: a corrupted position gets the mask token, id V (GPTConfig.mask_token: one extra
             input-only embedding row; the tied head still predicts only [0, V)).
Losses (--cdm_loss; the first is the original's):
  plain: one rate r ~ U(MASK_RATE_RANGE) per step, CE averaged over the corrupted positions.
  elbo:  MDLM's continuous-time ELBO with the linear schedule alpha_t = 1 - t: each row of the
         global batch gets its own mask time t (stratified, elbo_times), each position is masked
         with probability t, and the loss is the sum over masked positions of CE / t, divided by
         the global B*T: the NELBO per token (an upper bound on the NLL per token of an
         absorbing model). Only with absorbing noise: for uniform noise the 1/t weighting is not
         an ELBO, so that pair is refused (check_pair).
The evaluator's ELBO estimate (eval/elbo.py) draws its own stratified times per window from its
own stream; it shares the process (absorbing mask, linear schedule) with this file, not the draws.

Importing this module imports neither torch nor mlx (the MLX install has no torch): each
corruption imports its framework when called.
"""

from __future__ import annotations

NOISES = ("uniform", "absorbing")
CDM_LOSSES = ("plain", "elbo")
# The plain loss's mask rate r ~ U(lo, hi), one per step (the original's).
MASK_RATE_RANGE = (0.15, 0.50)
HELP = {
    "noise": "denoising corruption: uniform (the original's D3PM-uniform) or absorbing (a mask token, one "
             "extra input-only embedding row)",
    "cdm_loss": "plain: the original's rate U(0.15, 0.5) and masked-mean CE; elbo: MDLM's continuous-time ELBO "
                "(t ~ U(0, 1) stratified per row, CE weighted 1/t; needs --noise absorbing)",
}


def has_mask_token(noise: str) -> bool:
    """Whether a model trained with this noise needs the mask token's input row (GPTConfig.mask_token)."""
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}; choose {' or '.join(NOISES)}")
    return noise == "absorbing"


def noise_of_config(config) -> str:
    """The noise a model was trained with, read from its GPTConfig (a mask row means absorbing)."""
    return "absorbing" if config.mask_token else "uniform"


def check_noise_fits(config, noise: str) -> None:
    """A model's embedding must fit the noise it is trained with: absorbing noise writes the mask
    id V, which only a model with the mask row (GPTConfig.mask_token) can read."""
    if has_mask_token(noise) != bool(config.mask_token):
        raise ValueError(f"noise {noise} does not fit a model with mask_token={config.mask_token}: build the "
                         "model config with has_mask_token(noise)")


def check_pair(noise: str, loss: str) -> None:
    """Refuse a (noise, loss) pair that is not a training objective (ValueError naming the flags)."""
    if loss not in CDM_LOSSES:
        raise ValueError(f"--cdm_loss {loss}: unknown loss; choose {' or '.join(CDM_LOSSES)}")
    if loss == "elbo" and noise != "absorbing":
        raise ValueError("--cdm_loss elbo needs --noise absorbing (the 1/t weighting is the ELBO of the absorbing "
                         "process only)")


def elbo_times(u: float, n_rows: int) -> list[float]:
    """The mask times of --cdm_loss elbo for the n_rows rows of the global batch, from one uniform
    draw u in [0, 1): t_b = 1 - (b + u) / n_rows. Stratified (one time in each interval of width
    1/n_rows, as MDLM's low-discrepancy sampler), so the batch covers (0, 1] evenly and the
    1/t-weighted loss has less variance; each t_b alone is still U(0, 1], so the loss is unbiased.
    1 - ...: t lies in (0, 1], never 0, so 1/t is finite. Both corruptions below compute their
    times with this formula on their device (each draws u from its own generator)."""
    return [1.0 - (b + u) / n_rows for b in range(n_rows)]


def corrupt_torch(x, vocab_size: int, gen, rank: int = 0, world_size: int = 1, noise: str = "uniform",
                  loss: str = "plain"):
    """The torch trainer's corruption on the device (no host sync): (noisy input, weight, denominator).

    The denoising loss is train_cdm.masked_cdm_loss(CE, weight, denominator) = sum(CE * weight) /
    denominator (times world_size), so one function serves both losses:
      plain: one rate r ~ U(MASK_RATE_RANGE); weight = the bool mask, denominator = the global
             masked count (the original's masked mean);
      elbo:  row b of the global batch gets its mask time t_b (elbo_times), masked with
             probability t_b; weight = mask / t_b, denominator = global B*T (NELBO per token).
    The draws are for the GLOBAL batch (world_size * B rows) and this rank keeps rows
    [rank*B, (rank+1)*B), so the noise is the same whatever the number of ranks. The plain-uniform
    path draws exactly what it always drew (rate, mask, noise in that order).
    """
    import torch

    B, T = x.shape
    n_rows = world_size * B
    if loss == "plain":
        lo, hi = MASK_RATE_RANGE
        rate = lo + (hi - lo) * torch.rand((), generator=gen, device=x.device)
    else:
        u = torch.rand((), generator=gen, device=x.device)
        rows_index = torch.arange(n_rows, device=x.device, dtype=torch.float32)
        rate = (1.0 - (rows_index + u) / n_rows)[:, None]  # elbo_times, on the device
    mask_all = torch.rand((n_rows, T), generator=gen, device=x.device) < rate
    rows = slice(rank * B, (rank + 1) * B)
    mask = mask_all[rows]
    if noise == "uniform":
        noise_all = torch.randint(0, vocab_size, (n_rows, T), generator=gen, device=x.device)
        noisy = torch.where(mask, noise_all[rows], x)
    else:
        noisy = torch.where(mask, torch.full_like(x, vocab_size), x)
    if loss == "plain":
        return noisy, mask, mask_all.sum()
    weight = mask.float() / rate[rows]
    return noisy, weight, torch.tensor(float(n_rows * T), device=x.device)


def corrupt_mlx(x, vocab_size: int, key, noise: str = "uniform", loss: str = "plain"):
    """The MLX trainer's corruption from an explicit key: (noisy input, weight); corrupt_torch's rules.

    plain: one rate r ~ U(MASK_RATE_RANGE) per call; weight = the bool mask (masked mean).
    elbo:  row b gets its mask time t_b = 1 - (b + u) / B (elbo_times), masked with probability
           t_b; weight = mask / t_b as float32 (sum over B*T).
    The plain-uniform path splits and draws exactly as before.
    """
    import mlx.core as mx

    k_rate, k_mask, k_noise = mx.random.split(key, 3)
    if loss == "plain":
        lo, hi = MASK_RATE_RANGE
        rate = lo + (hi - lo) * mx.random.uniform(key=k_rate)
    else:
        n_rows = x.shape[0]
        rate = (1.0 - (mx.arange(n_rows, dtype=mx.float32) + mx.random.uniform(key=k_rate)) / n_rows)[:, None]
    mask = mx.random.uniform(shape=x.shape, key=k_mask) < rate
    if noise == "uniform":
        noisy = mx.where(mask, mx.random.randint(0, vocab_size, x.shape, dtype=x.dtype, key=k_noise), x)
    else:
        noisy = mx.where(mask, mx.full(x.shape, vocab_size, dtype=x.dtype), x)
    if loss == "plain":
        return noisy, mask
    return noisy, mask.astype(mx.float32) / rate
