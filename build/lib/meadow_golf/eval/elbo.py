"""The absorbing-mask diffusion ELBO of the bidirectional pass: an upper bound on the NLL; numpy only.

For a model trained with absorbing noise (train_cdm.py --noise absorbing: a masked position holds
the mask token, id V, and the model never predicts it), MDLM's continuous-time bound with the
linear schedule alpha_t = 1 - t is, for the T targets x of one window,

    NELBO(x) = E_{t ~ U(0, 1)} E_{M ~ Bernoulli(t)^T} [ (1/t) * sum_{i in M} -log p(x_i | x with M masked) ]

where p is the bidirectional pass (cf.py's scorer with is_causal=False) on x with every position
of M replaced by the mask token. Integrating t out for a fixed mask of m >= 1 positions,
E_t[t^m (1 - t)^(T-m) / t] = B(m, T - m + 1) = (m-1)! (T-m)! / T!, which is exactly the
probability that a uniformly random decoding order decodes some position of M next after having
decoded the complement of M first. So

    NELBO(x) = E_sigma [ sum_k -log p(x_sigma(k) | x_sigma(<k)) ]   (sigma a uniform random order)

the mean over all T! orders of the any-order chain-rule code length. Each order's product Q_sigma
is a normalized distribution over V^T (a chain rule of normalized conditionals), so by Jensen
NELBO(x) >= -log E_sigma Q_sigma(x) = -log Q_mix(x) with Q_mix a normalized mixture: sum_x
exp(-NELBO(x)) <= 1. The ELBO is therefore a valid code length in expectation (an upper bound
on the NLL of the model's order-mixture), whatever the model; for conditionals that are the
exact conditionals of one joint P, every order gives -log P(x) and the bound is tight.
tests/test_elbo.py checks both identities by enumeration.

Estimator: K Monte Carlo samples per window, stratified in t: sample k of window n has
t = 1 - (k + u_{n,k}) / K with u uniform on [0, 1), one time in each of K strata of width 1/K
(so the K times cover (0, 1] evenly; t > 0, 1/t finite). Each sample's mask is Bernoulli(t) per
position. The mean over k is an unbiased estimate of NELBO(x_n). Window n's times and masks come
from np.random.default_rng([seed, ELBO_STREAM, n]) (draw_noise), so they depend on
(seed, n, K, T) only, not on the batching or on the tokens. The standard error is
over windows: the windows are independent and each window's K-sample mean is independent of the
others', so sd(per-window means) / sqrt(N) covers the noise of the masks AND of the windows (it
is the error of the estimate of the expected NELBO over the data, the quantity compared with an
entropy floor). eval_cf.py reports it as "upper bound (ELBO), a valid code length in expectation".
"""

from __future__ import annotations

import math

import numpy as np

# The ELBO's noise stream: default_rng([seed, ELBO_STREAM]) is unrelated to the fill stream
# (default_rng(seed), cf.draw_fills) and the window stream (eval_cf.WINDOW_STREAM).
ELBO_STREAM = 0x656C626F  # "elbo"
LABEL = "upper bound (ELBO), a valid code length in expectation"


def draw_noise(seed: int, n_windows: int, n_samples: int, T: int, first_window: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(times float64 (N, K), masks bool (N, K, T)) for windows first_window .. first_window + N - 1.

    Window n draws from its own generator default_rng([seed, ELBO_STREAM, n]): its K times
    (stratified, see the module docstring) and then its K masks. So a window's noise depends on
    (seed, n, K, T) only: a batch can draw just its own windows."""
    if n_samples < 1 or T < 1 or n_windows < 0 or first_window < 0:
        raise ValueError(f"need n_samples >= 1, T >= 1, n_windows >= 0, first_window >= 0; got {n_samples}, {T}, "
                         f"{n_windows}, {first_window}")
    times = np.empty((n_windows, n_samples))
    masks = np.empty((n_windows, n_samples, T), dtype=bool)
    for row in range(n_windows):
        rng = np.random.default_rng([seed, ELBO_STREAM, first_window + row])
        times[row] = 1.0 - (np.arange(n_samples) + rng.random(n_samples)) / n_samples
        masks[row] = rng.random((n_samples, T)) < times[row][:, None]
    return times, masks


def sample_terms(scorer, x: np.ndarray, times: np.ndarray, masks: np.ndarray, mask_id: int) -> np.ndarray:
    """float64 (B, K): (1/t) * sum over masked positions of -log p(x_i | x masked), per sample.

    x: int (B, T) targets; times (B, K) in (0, 1]; masks bool (B, K, T). One bidirectional scorer
    call per sample k, over the whole batch. A sample that masks nothing costs 0 nats."""
    x = np.ascontiguousarray(x, dtype=np.int64)
    B, K = times.shape
    if masks.shape != (B, K, x.shape[1]):
        raise ValueError(f"masks shape {masks.shape} != {(B, K, x.shape[1])}")
    if not np.all((times > 0) & (times <= 1)):
        raise ValueError("mask times must lie in (0, 1]")
    terms = np.zeros((B, K))
    for k in range(K):
        inputs = np.where(masks[:, k], mask_id, x)
        logp = np.asarray(scorer(inputs, False, x), dtype=np.float64)
        if logp.shape != x.shape:
            raise ValueError(f"scorer returned shape {logp.shape}, expected {x.shape}")
        # Only masked positions count: an unmasked row is not part of the bound (0 * -inf is
        # avoided by selecting, not multiplying).
        terms[:, k] = -np.where(masks[:, k], logp, 0.0).sum(axis=1) / times[:, k]
    return terms


def summarize(per_window_mean: np.ndarray, total_bytes: int, n_samples: int) -> dict:
    """Totals, bits per byte and standard errors from each window's K-sample mean (nats).

    bpb = sum_n NELBO_n / (ln 2 * total bytes). Its standard error: the windows' means are
    independent, so SE(sum) = sqrt(N) * sd(means) (sd with ddof 1), over the same bytes."""
    means = np.asarray(per_window_mean, dtype=np.float64)
    n = means.size
    total = math.fsum(means)
    sd = float(means.std(ddof=1)) if n > 1 else float("nan")
    se_total = math.sqrt(n) * sd if n > 1 else float("nan")
    scale = 1.0 / (math.log(2) * total_bytes) if total_bytes > 0 else float("nan")
    return {
        "label": LABEL,
        "valid_code_length": "in expectation (an upper bound on the NLL of the model's order mixture)",
        "nll_sum": total,
        "nll_sum_se": se_total,
        "bpb": total * scale,
        "bpb_se": se_total * scale,
        "windows": n,
        "samples_per_window": n_samples,
        "bytes": int(total_bytes),
        "time_sampling": "stratified: t = 1 - (k + u) / K, u ~ U[0, 1), one time per stratum of width 1/K",
        "se_over": "windows (sd of the per-window K-sample means, ddof 1, times sqrt(N))",
    }


# ----------------------------------------------------------------------------- exact (tests, tiny T)


def exact_nelbo(scorer, x: np.ndarray, mask_id: int) -> np.ndarray:
    """float64 (B,): NELBO(x) by enumerating all 2^T masks with the Beta weights of the module
    docstring, B(m, T - m + 1) for a mask of m >= 1 positions. Tiny T only (2^T scorer calls)."""
    x = np.ascontiguousarray(x, dtype=np.int64)
    B, T = x.shape
    if T > 16:
        raise ValueError(f"exact_nelbo enumerates 2^T masks; T={T} is too long")
    total = np.zeros(B)
    for code in range(1, 2**T):
        mask = np.array([(code >> i) & 1 for i in range(T)], dtype=bool)
        m = int(mask.sum())
        weight = math.exp(math.lgamma(m) + math.lgamma(T - m + 1) - math.lgamma(T + 1))
        logp = np.asarray(scorer(np.where(mask[None, :], mask_id, x), False, x), dtype=np.float64)
        total += weight * -logp[:, mask].sum(axis=1)
    return total
