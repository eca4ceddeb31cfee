"""Seed statistics that stay honest at 2-5 seeds, for cells scored on the same windows (numpy only).

The design of the CPU records is CROSSED, not nested: every seed's cells are scored on the same
evaluation windows. A difference of two groups (a shared model minus its control, paired by seed)
then has two sources of error:

- seeds: d_s, the per-seed paired difference, varies from seed to seed (initialization, data
  order). Over k seeds the mean d̄ has the Student t interval d̄ ± t_{k-1} · sd(d) / sqrt(k)
  (df = k - 1; with k = 2 the quantile is 12.7, as it must be).
- windows: the windows are a sample of the validation text, and the SAME sample serves every seed,
  so its error does not average out over seeds. Its variance is estimated by a bootstrap that
  resamples ONE window set per replicate and applies it to every seed (and to both cells of a
  seed): var_W = Var_b( mean_s [BPB_group,s(b) - BPB_control,s(b)] ).

The interval reported is d̄ ± sqrt((t_{k-1} · sd(d)/sqrt(k))² + (z_0.975 · sd_W)²): the t interval
widened, in quadrature, by the shared window error (`paired_seed_interval`). The per-seed window
noise is partly in both terms, so the sum is on the conservative side; the coverage test
(tests/test_seed_stats.py) simulates crossed experiments with a known effect and checks that it
covers the truth at least 93% of the time at k = 2, 3 and 5. With fewer than two paired seeds there
is no interval over seeds; a comparison with unpaired seeds is Welch's t (labelled unpaired), never
printed as a paired test. No percentile bootstrap over seeds is used: with k = 2 or 3 seeds it has
3 or 10 support points and no t correction, so its "95%" interval is far too narrow.

Also here: the Student t distribution (regularized incomplete beta function by continued
fraction, and its quantile by bisection), so that nothing needs scipy.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

LN2 = math.log(2.0)
Z_975 = 1.959963984540054  # the two-sided 95% normal quantile
CI_LEVEL = 0.95
PAIRED_METHOD = "paired t over {k} seeds (df {df}) widened by the shared-window bootstrap variance"
PAIRED_T_ONLY = "paired t over {k} seeds (df {df}); windows not shared, no window term"
WELCH_METHOD = "unpaired (Welch t, df {df:.1f})"
WINDOW_ONLY = "one seed: paired percentile bootstrap over windows (window sampling only, not seeds)"
WINDOW_METHOD = "percentile bootstrap over windows ({n_boot} resamples, numpy default_rng({seed}))"
# Replicates drawn per block: bounds the (block, N) index array for large N; the stream of
# draws is the same as one replicate at a time (see window_bootstrap).
BOOT_BLOCK = 64


# ----------------------------------------------------------------------------- Student t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x={x} outside [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if df <= 0:
        raise ValueError(f"t distribution needs df > 0, got {df}")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """Student t cumulative distribution function."""
    half = 0.5 * t_two_sided_p(t, df)
    return 1.0 - half if t >= 0 else half


def t_quantile(p: float, df: float) -> float:
    """Student t quantile by bisection on t_cdf, for 0.5 < p < 1."""
    if not 0.5 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df > 0, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def paired_t(a: list[float], b: list[float]) -> dict | None:
    """Paired t-test of a[i] - b[i] (t = mean(d) / (sd(d) / sqrt(k)), df = k - 1, two-sided p);
    None if k < 2 or the differences do not vary."""
    if len(a) != len(b):
        raise ValueError("paired_t needs two lists of the same length")
    d = [x - y for x, y in zip(a, b)]
    k = len(d)
    if k < 2:
        return None
    sd = statistics.stdev(d)
    if sd == 0:
        return None
    t = statistics.fmean(d) / (sd / math.sqrt(k))
    return {"t": t, "df": k - 1, "p": t_two_sided_p(t, k - 1)}


def welch_t(a: list[float], b: list[float]) -> dict | None:
    """Welch's two-sample t-test (Welch-Satterthwaite df); None unless both have n >= 2 and s > 0."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return None
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return {"t": t, "df": df, "p": t_two_sided_p(t, df), "se": math.sqrt(va + vb)}


# ----------------------------------------------------------------------------- windows


def bpb(nll: np.ndarray, n_bytes: np.ndarray) -> np.ndarray:
    """BPB of windows along the last axis: sum NLL / (ln 2 * sum bytes) (METHOD.md §2)."""
    return nll.sum(axis=-1) / (LN2 * n_bytes.sum(axis=-1))


def shared_window_sd(group: tuple[np.ndarray, np.ndarray], control: tuple[np.ndarray, np.ndarray],
                     index: np.ndarray) -> np.ndarray:
    """The bootstrap sd of the seed-mean difference when ONE window set serves every seed.

    group, control: (nll, bytes), each (..., k, N): k seeds (same seeds in the same order) on the
    same N windows; leading axes are independent experiments (the coverage test stacks them).
    index: (n_boot, N) window indices, one resampled set per replicate, applied to every seed and
    both cells. Returns sd over replicates of mean_s [BPB_g,s - BPB_c,s], shape (...)."""
    (gn, gb), (cn, cb) = group, control
    if not gn.shape == gb.shape == cn.shape == cb.shape or index.shape[-1] != gn.shape[-1]:
        raise ValueError("shared_window_sd needs four (..., k, N) arrays on the same N windows")
    # (..., k, n_boot, N) -> (..., k, n_boot): each replicate's BPB of each seed's two cells.
    diff = bpb(gn[..., index], gb[..., index]) - bpb(cn[..., index], cb[..., index])
    return diff.mean(axis=-2).std(axis=-1, ddof=1)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])  # numpy's default (linear) rule
    return float(lo), float(hi)


def window_bootstrap(cells: list[tuple[np.ndarray, np.ndarray]], n_boot: int, seed: int,
                     level: float = CI_LEVEL) -> dict:
    """Percentile bootstrap CI over windows of BPB(cells[0]) (one cell), or of
    BPB(cells[0]) - BPB(cells[1]) (two cells on the SAME windows, paired: one set of window
    indices serves both, so the windows' shared difficulty cancels).

    cells: (nll (N,), bytes (N,)) per cell. Draws: rng = default_rng(seed); replicate r takes
    idx = rng.integers(0, N, size=N), one replicate after the other. BPB is a ratio of sums,
    so a replicate recomputes both sums on the drawn windows (not a mean of per-window BPBs).
    """
    if len(cells) not in (1, 2):
        raise ValueError("window_bootstrap takes one cell, or two cells on the same windows")
    n = cells[0][0].size
    if any(nll.shape != (n,) or b.shape != (n,) for nll, b in cells):
        raise ValueError("the cells of a paired bootstrap must have the same windows")
    rng = np.random.default_rng(seed)

    def stat(index):
        values = [bpb(nll[index], b[index]) for nll, b in cells]
        return values[0] if len(values) == 1 else values[0] - values[1]

    replicates = []
    for start in range(0, n_boot, BOOT_BLOCK):
        index = rng.integers(0, n, size=(min(BOOT_BLOCK, n_boot - start), n))
        replicates.append(stat(index))
    lo, hi = _percentiles(np.concatenate(replicates), level)
    full = np.arange(n)
    return {"estimate": float(stat(full)), "lo": lo, "hi": hi, "level": level, "n_boot": n_boot, "seed": seed,
            "windows": n, "method": WINDOW_METHOD.format(n_boot=n_boot, seed=seed)}


def draw_window_index(n_windows: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, N) indices from numpy default_rng(seed): replicate r is row r, drawn in one call."""
    return np.random.default_rng(seed).integers(0, n_windows, size=(n_boot, n_windows))


# ----------------------------------------------------------------------------- intervals


def interval(lo: float, hi: float, method: str, level: float = CI_LEVEL, **extra) -> dict:
    return {"lo": lo, "hi": hi, "level": level, "method": method, **extra}


def seed_interval_bounds(diffs: np.ndarray, window_sd: np.ndarray | None, level: float = CI_LEVEL) -> dict:
    """Vectorized core of paired_seed_interval: diffs (..., k) with k >= 2 paired seeds, window_sd
    (...) or None. Returns arrays lo, hi (...), the t quantile and both half-widths."""
    diffs = np.asarray(diffs, dtype=np.float64)
    k = diffs.shape[-1]
    if k < 2:
        raise ValueError("an interval over seeds needs k >= 2 paired seeds")
    mean, sd = diffs.mean(axis=-1), diffs.std(axis=-1, ddof=1)
    t = t_quantile(0.5 + level / 2.0, k - 1)
    seed_half = t * sd / math.sqrt(k)
    window_half = np.zeros_like(seed_half) if window_sd is None else -_normal_ppf((1.0 - level) / 2.0) * window_sd
    half = np.hypot(seed_half, window_half)
    return {"lo": mean - half, "hi": mean + half, "t": t, "seed_half": seed_half, "window_half": window_half}


def paired_seed_interval(diffs: list[float], window_sd: float | None, level: float = CI_LEVEL) -> dict | None:
    """The interval of mean(diffs) over k >= 2 paired seeds: the t interval with k - 1 df, widened in
    quadrature by z · window_sd (None: the seeds' cells do not share windows, t only)."""
    k = len(diffs)
    if k < 2:
        return None
    b = seed_interval_bounds(np.asarray(diffs), None if window_sd is None else np.float64(window_sd), level)
    method = (PAIRED_METHOD if window_sd is not None else PAIRED_T_ONLY).format(k=k, df=k - 1)
    return interval(float(b["lo"]), float(b["hi"]), method, level, t_quantile=b["t"],
                    seed_half_width=float(b["seed_half"]), window_sd=window_sd,
                    window_half_width=float(b["window_half"]))


def welch_interval(a: list[float], b: list[float], level: float = CI_LEVEL) -> dict | None:
    """Welch's t interval of mean(a) - mean(b) (unpaired seeds), or None."""
    result = welch_t(a, b)
    if result is None:
        return None
    t = t_quantile(0.5 + level / 2.0, result["df"])
    mean = statistics.fmean(a) - statistics.fmean(b)
    return interval(mean - t * result["se"], mean + t * result["se"], WELCH_METHOD.format(df=result["df"]), level)


def _normal_ppf(p: float) -> float:
    """The standard normal quantile (bisection on erfc; only the 0.025 of a 95% interval is needed)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal quantile needs 0 < p < 1, got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------- a line through seeds


def ols_line(x: list[float], y: list[float], level: float = CI_LEVEL) -> dict:
    """Ordinary least squares y = a + b·x through every seed-level point (one per seed and size),
    the slope's classical se from the residuals and its t interval with n - 2 df. Needs n >= 3
    points at two x or more. The points are the seeds' own paired differences, so the seed-to-seed
    scatter IS the error (no per-point weights, no floor, no estimate from another method)."""
    n = len(x)
    if n != len(y) or n < 3:
        raise ValueError(f"a line with an error needs at least 3 points of (x, y), got {n}")
    xm, ym = statistics.fmean(x), statistics.fmean(y)
    sxx = math.fsum((xi - xm) ** 2 for xi in x)
    if sxx <= 0:
        raise ValueError("the points need at least two distinct x")
    b = math.fsum((xi - xm) * (yi - ym) for xi, yi in zip(x, y)) / sxx
    a = ym - b * xm
    rss = math.fsum((yi - a - b * xi) ** 2 for xi, yi in zip(x, y))
    df = n - 2
    se_b = math.sqrt(rss / df / sxx)
    t = t_quantile(0.5 + level / 2.0, df)
    return {"intercept": a, "slope": b, "slope_se": se_b, "slope_ci": interval(b - t * se_b, b + t * se_b,
            f"OLS on {n} seed-level differences, t with df {df}", level), "df": df, "n_points": n,
            "t": t, "p": t_two_sided_p(b / se_b, df) if se_b > 0 else None}


def weighted_line_birge(x: list[float], y: list[float], se: list[float], level: float = CI_LEVEL) -> dict:
    """The earlier method, kept only for the footnote that reports its verdict beside OLS: weighted
    least squares with weights 1/se², the slope's se scaled by the Birge ratio when > 1, t with k - 2 df."""
    k = len(x)
    if k < 3 or k != len(y) or k != len(se) or any(not s > 0 for s in se):
        raise ValueError("weighted_line_birge needs k >= 3 points with se > 0")
    w = [1.0 / (s * s) for s in se]
    sw = math.fsum(w)
    xm = math.fsum(wi * xi for wi, xi in zip(w, x)) / sw
    ym = math.fsum(wi * yi for wi, yi in zip(w, y)) / sw
    sxx = math.fsum(wi * (xi - xm) ** 2 for wi, xi in zip(w, x))
    b = math.fsum(wi * (xi - xm) * (yi - ym) for wi, xi, yi in zip(w, x, y)) / sxx
    a = ym - b * xm
    chi2 = math.fsum(wi * (yi - a - b * xi) ** 2 for wi, xi, yi in zip(w, x, y))
    birge = math.sqrt(chi2 / (k - 2))
    se_b = math.sqrt(1.0 / sxx) * max(1.0, birge)
    t = t_quantile(0.5 + level / 2.0, k - 2)
    return {"slope": b, "slope_ci": interval(b - t * se_b, b + t * se_b,
            f"weighted LS on {k} size means, Birge-scaled, t with df {k - 2}", level)}
