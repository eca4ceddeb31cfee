"""A straight line through per-size estimates that carry their own uncertainty: y = a + b·log10(params).

The scale sweep (experiments/2026-12-01_share_ratio_and_scale) measures, at each model size, a
difference with a CI (the Pure-AR tax of joint training; the best valid decoder's gap to the
control). How that difference moves with size is the slope b of a weighted least-squares line in
log10(params), each point weighted by 1/se², se = (CI width) / (2 · z_0.975) read off its CI.

The slope's standard error is the weighted-LS one, scaled up by the Birge ratio
sqrt(chi²/(k − 2)) when the points scatter about the line more than their own errors allow (a
line cannot describe them exactly: the extra scatter is counted, never hidden). Its CI uses
Student's t with k − 2 degrees of freedom. With 4 or 5 sizes that interval is wide, as it should be.
"""

from __future__ import annotations

import math

Z_975 = 1.959963984540054  # the two-sided 95% normal quantile: CI half-width / se


def se_from_ci(lo: float, hi: float, level_z: float = Z_975) -> float:
    """The standard error a symmetric normal CI [lo, hi] implies."""
    if not hi > lo:
        raise ValueError(f"a CI needs hi > lo, got [{lo}, {hi}]")
    return (hi - lo) / (2.0 * level_z)


def t_quantile(p: float, df: float, t_cdf) -> float:
    """Student t quantile by bisection on a CDF t_cdf(t, df) (summarize.t_cdf), for 0.5 < p < 1."""
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


def weighted_line(x: list[float], y: list[float], se: list[float], t_cdf, level: float = 0.95) -> dict:
    """Weighted least squares y = a + b·x with weights 1/se²; the slope's SE (Birge-scaled when
    chi²/(k−2) > 1) and its t CI with k − 2 df. Needs k >= 3 points with se > 0."""
    k = len(x)
    if k != len(y) or k != len(se):
        raise ValueError("x, y and se must have one length")
    if k < 3:
        raise ValueError(f"a line with an error needs at least 3 points, got {k}")
    if any(not s > 0 for s in se):
        raise ValueError("every point needs se > 0")
    w = [1.0 / (s * s) for s in se]
    sw = math.fsum(w)
    xm = math.fsum(wi * xi for wi, xi in zip(w, x)) / sw
    ym = math.fsum(wi * yi for wi, yi in zip(w, y)) / sw
    sxx = math.fsum(wi * (xi - xm) ** 2 for wi, xi in zip(w, x))
    if sxx <= 0:
        raise ValueError("the points need at least two distinct x")
    b = math.fsum(wi * (xi - xm) * (yi - ym) for wi, xi, yi in zip(w, x, y)) / sxx
    a = ym - b * xm
    chi2 = math.fsum(wi * (yi - a - b * xi) ** 2 for wi, xi, yi in zip(w, x, y))
    df = k - 2
    birge = math.sqrt(chi2 / df)
    se_b = math.sqrt(1.0 / sxx) * max(1.0, birge)
    t = t_quantile(0.5 + level / 2.0, df, t_cdf)
    return {"intercept": a, "slope": b, "slope_se": se_b, "slope_ci": {"lo": b - t * se_b, "hi": b + t * se_b},
            "level": level, "df": df, "chi2": chi2, "birge_ratio": birge, "t": t, "n_points": k}
