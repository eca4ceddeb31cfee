"""The plots of a summary: BPB against the shared weight per scale (results.png) and the Pure-AR tax
against model size (results_scale.png). matplotlib is a regular dependency; without it a plot is
skipped with a message."""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.report.rows import metric_values, noise_text, reference_metric, weight_text
from meadow_golf.report.tables import CI_LEVEL, LOWER


def wrapped(title: str, fig) -> str:
    """The title broken into lines that fit the figure (about 7.5 characters per inch at size 10):
    an unbroken long title is cut off at both edges of the png."""
    return textwrap.fill(title, width=max(40, int(fig.get_figwidth() * 7.5)))


def finish(fig, plt, path: Path, title: str) -> str:
    """Title wrapped to the figure, layout, png written atomically, figure closed."""
    fig.suptitle(wrapped(title, fig), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return f"{path.name}: written"


def series_label(name: str, several_seeds: bool) -> str:
    """A line's legend entry: a std bar only exists where a point has two seeds or more."""
    return f"{name} (seed mean ± std)" if several_seeds else f"{name} (one seed)"


def plot(path: Path, title: str, groups: list[dict]) -> str:
    """BPB against cdm_weight per scale (w=0: the control), one line per decoder through the seed
    means with ± std bars, and every seed's own value as a point (with 2-3 seeds a std bar alone
    hides how few there are); each control's Pure-AR BPB as a horizontal reference line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"{path.name}: skipped (matplotlib is not installed; pip install -e .)"
    scales = list(dict.fromkeys(g["scale"] for g in groups))
    fig, axes = plt.subplots(1, len(scales), figsize=(5.5 * len(scales), 4.2), squeeze=False)
    styles = {"ar": ("Pure-AR", "-", "o"), "cf_published": ("CF published (NOT a valid code length)", "--", "s"),
              "cf_valid": ("cf_valid", "-", "^")}
    for ax, scale in zip(axes[0], scales):
        mine = [g for g in groups if g["scale"] == scale]
        # The line runs from the wall-clock control (w=0) through the shared runs; a token-matched
        # control is its own reference line below.
        # One line per noise (the control, w=0, starts each): uniform and absorbing cells at the
        # same weight are different models.
        noises = list(dict.fromkeys(g["noise"] for g in mine if not g["control"])) or [None]
        for noise in noises:
            on_line = sorted((g for g in mine if g["match"] != "tokens" and (g["control"] or g["noise"] == noise)),
                             key=lambda g: g["cdm_weight"])
            tag = f", {noise} noise" if len(noises) > 1 else ""
            for metric, (label, ls, marker) in styles.items():
                pts = [(g["cdm_weight"], g["stats"][metric]) for g in on_line if g["stats"][metric] is not None]
                if not pts:
                    continue
                several = any(g["n"] > 1 for g in on_line)
                bars = ax.errorbar([w for w, _ in pts], [s["mean"] for _, s in pts],
                                   yerr=[s["std"] or 0.0 for _, s in pts], linestyle=ls, marker=marker, capsize=4,
                                   label=series_label(label + tag, several))
                seeds = [(g["cdm_weight"], v) for g in on_line for v in metric_values(g["rows"], metric)]
                if any(g["n"] > 1 for g in on_line):
                    ax.scatter([w for w, _ in seeds], [v for _, v in seeds], s=12, alpha=0.5,
                               color=bars[0].get_color(), marker=marker, zorder=3, label=f"{label}{tag}: each seed")
        for c in (g for g in mine if g["control"]):
            ref = c["stats"][reference_metric(c)]
            if ref is not None:
                tag = ", token-matched" if c["match"] == "tokens" else ""
                ax.axhline(ref["mean"], color="gray", linestyle=":" if tag else "-.", linewidth=1.2,
                           label=f"control w=0{tag}: Pure-AR {ref['mean']:.4f}")
        sizes = ", ".join(dict.fromkeys(r["size"] for g in mine for r in g["rows"]))
        # A size-named scale (3L96) is that size on every preset: nothing stands in for it.
        ax.set_title(sizes if sizes.replace("-d", "") == scale else f"{sizes} (stands in for {scale})",
                     fontsize=9, wrap=True)
        ax.set_xlabel("cdm_weight")
        ax.set_ylabel(f"bits per byte ({LOWER})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig, plt, path, title)


def plot_scale(path: Path, title: str, points: list[dict], fits: dict) -> str:
    """The Pure-AR tax on the trainer's stream and on the windows (held-out when evaluated) against the
    control's params (log x): each size's seed mean with its interval, each seed's own difference, one
    series per shared weight and noise, with the OLS line through the seeds."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"{path.name}: skipped (matplotlib is not installed; pip install -e .)"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series = dict.fromkeys((p["cdm_weight"], p["noise"]) for p in points)
    window = "tax_heldout" if any(p["tax_heldout"] for p in points) else "tax"
    for ax, quantity, ylabel in ((axes[0], "tax_stream", "Pure-AR tax on the trainer's validation stream (BPB)"),
                                 (axes[1], window, "Pure-AR tax on the " + ("held-out" if window == "tax_heldout"
                                                                           else "evaluation") + " windows (BPB)")):
        for weight, noise in series:
            mine = sorted((p for p in points if p["cdm_weight"] == weight and p["noise"] == noise and p[quantity]),
                          key=lambda p: p["params"] or 0)
            name = f"w={weight_text(weight)}{noise_text(noise, None)}"
            xs = [p["params"] for p in mine]
            ys = [p[quantity]["diff"] for p in mine]
            lo = [p[quantity]["diff"] - p[quantity]["ci"]["lo"] if p[quantity]["ci"] else 0.0 for p in mine]
            hi = [p[quantity]["ci"]["hi"] - p[quantity]["diff"] if p[quantity]["ci"] else 0.0 for p in mine]
            bars = ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", linestyle="none", capsize=4,
                               label=f"{name}: seed mean ({CI_LEVEL:.0%} CI, method in results.md)")
            seeds = [(p["params"], d) for p in mine for d in p[quantity]["per_seed_diffs"].values()]
            ax.scatter([x for x, _ in seeds], [d for _, d in seeds], s=12, alpha=0.5, color=bars[0].get_color(),
                       zorder=3, label=f"{name}: each seed")
            fit = fits.get(f"{quantity} {name}", {}).get("fit")
            if fit and xs:
                grid = np.logspace(math.log10(min(xs)), math.log10(max(xs)), 50)
                ax.plot(grid, fit["intercept"] + fit["slope"] * np.log10(grid), color=bars[0].get_color(),
                        linewidth=1, label=f"OLS on seeds: {fit['slope']:+.3f} per decade "
                                           f"[{fit['slope_ci']['lo']:+.3f}, {fit['slope_ci']['hi']:+.3f}]")
        ax.axhline(0.0, color="gray", linewidth=1, linestyle="-.")
        ax.set_xscale("log")
        ax.set_xlabel("parameters of the control model")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig, plt, path, title + " (below 0: lower BPB than the control)")
