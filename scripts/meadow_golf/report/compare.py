"""Comparisons of loaded rows (report.rows): shared groups against their controls over seeds, cells
against cells over windows, the best valid decoder, the bidirectional pass with the ELBO, and the
differences against model size with their line. The statistics themselves are report.stats.

A comparison over seeds is PAIRED when at least two seeds are in both groups: per common seed the
difference d_s (same seed = same initialization and data order), diff = mean over those seeds
only, a paired t-test (df = k - 1), and the interval of report.stats (t with k - 1 df widened by the
shared-window bootstrap). Otherwise, with two seeds or more on each side, it is UNPAIRED: Welch's
t and its interval, labelled so, diff = difference of the two groups' means. With one common seed:
that seed's difference with a window interval (window sampling only). Never a mix: a paired test is
never printed beside an unpaired mean.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from meadow_golf.report import stats
from meadow_golf.report.rows import (BIDIR_DECODERS, NO_WINDOWS, VALID_DECODERS, WINDOW_METRICS, architecture,
                                     metric_values, reference_metric, same_windows, weight_text, noise_text,
                                     window_cell, window_set)

DEFAULT_N_BOOT = 2000
DEFAULT_BOOT_SEED = 0
# (metric of the shared group, metric of the control it is compared with), in table order: the
# valid two-pass decoder, the causal pass, the published number (the original's claim), the
# causal pass on held-out windows, and the trainer's own validation stream.
COMPARISONS = (("cf_valid", "ar"), ("ar", "ar"), ("cf_published", "ar"), ("ar_heldout", "ar_heldout"),
               ("val_bpb", "val_bpb"))
NO_STREAM_WINDOWS = ("the trainer's validation stream has no per-window file: t over seeds only (the stream's "
                     "own sampling error, shared by every seed, is not counted)")


def controls_of(group: dict, groups: list[dict]) -> list[dict]:
    """The control groups a shared group is compared with: same scale, same model up to the mask row."""
    return [c for c in groups if c["control"] and c["scale"] == group["scale"]
            and architecture(c["model"]) == architecture(group["model"])]


def by_seed(rows: list[dict], metric: str) -> dict:
    return {r["seed"]: r for r in rows if r[metric] is not None and r["seed"] is not None}


def shared_window_term(g_rows: list[dict], c_rows: list[dict], metric: str, ref: str, n_boot: int,
                       boot_seed: int) -> tuple[float | None, str | None]:
    """The bootstrap sd of the seed-mean difference with ONE resampled window set for every seed
    (report.stats.shared_window_sd), or (None, why not)."""
    if metric == "val_bpb" or ref == "val_bpb":
        return None, NO_STREAM_WINDOWS
    g_cells, c_cells = [window_cell(r, metric) for r in g_rows], [window_cell(r, ref) for r in c_rows]
    if any(c is None for c in g_cells + c_cells):
        return None, NO_WINDOWS
    sets = [window_set(r, metric) for r in g_rows] + [window_set(r, ref) for r in c_rows]
    if not all(same_windows(sets[0], other) for other in sets[1:]):
        return None, "the seeds' cells were not scored on the same windows: t over seeds only"
    stack = lambda cells, i: np.stack([c[i] for c in cells])  # noqa: E731  (k, N)
    index = stats.draw_window_index(g_cells[0][0].size, n_boot, boot_seed)
    sd = stats.shared_window_sd((stack(g_cells, 0), stack(g_cells, 1)), (stack(c_cells, 0), stack(c_cells, 1)),
                                index)
    return float(sd), None


def seed_test(group: dict, control: dict, metric: str, ref: str, n_boot: int = DEFAULT_N_BOOT,
              boot_seed: int = DEFAULT_BOOT_SEED) -> dict:
    """One comparison over seeds (the module docstring): per_seed_diffs, diff, the test and its ci."""
    mine, theirs = by_seed(group["rows"], metric), by_seed(control["rows"], ref)
    common = [seed for seed in mine if seed in theirs]
    diffs = {seed: mine[seed][metric] - theirs[seed][ref] for seed in common}
    out = {"metric": metric, "control_metric": ref, "seeds": common, "per_seed_diffs": {str(s): d for s, d in diffs.items()},
           "paired": bool(common), "diff": None, "result": None, "ci": None, "reason": None, "window_term": None}
    if len(common) >= 2:
        window_sd, why = shared_window_term([mine[s] for s in common], [theirs[s] for s in common], metric, ref,
                                            n_boot, boot_seed)
        values = list(diffs.values())
        out.update(method=f"paired t over {len(common)} common seeds", diff=statistics.fmean(values),
                   result=stats.paired_t([mine[s][metric] for s in common], [theirs[s][ref] for s in common]),
                   ci=stats.paired_seed_interval(values, window_sd), window_term=why)
        if out["result"] is None:
            out["reason"] = "the paired differences do not vary"
        return out
    a, b = metric_values(group["rows"], metric), metric_values(control["rows"], ref)
    if len(a) >= 2 and len(b) >= 2:
        result = stats.welch_t(a, b)
        out.update(method="unpaired (Welch t)", paired=False, diff=statistics.fmean(a) - statistics.fmean(b),
                   result=result and {k: result[k] for k in ("t", "df", "p")}, ci=stats.welch_interval(a, b),
                   reason=None if result else "neither side varies")
        return out
    if len(common) == 1:
        seed = common[0]
        out.update(method="one common seed: no test over seeds", diff=diffs[seed])
        ga, cb = window_cell(mine[seed], metric), window_cell(theirs[seed], ref)
        if ga is not None and cb is not None and same_windows(window_set(mine[seed], metric),
                                                              window_set(theirs[seed], ref)):
            boot = stats.window_bootstrap([ga, cb], n_boot, boot_seed)
            out["ci"] = stats.interval(boot["lo"], boot["hi"], stats.WINDOW_ONLY, boot["level"])
        else:
            out["reason"] = NO_STREAM_WINDOWS if metric == "val_bpb" else NO_WINDOWS
        return out
    out.update(method="none", paired=False,
               reason=f"no common seed and n = {len(a)} vs {len(b)}: no seed-level comparison")
    return out


def build_tests(groups: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """One entry per (shared group, control group of the same scale and model, comparison)."""
    tests = []
    for g in (g for g in groups if not g["control"]):
        for c in controls_of(g, groups):
            has_eval = reference_metric(c) == "ar"
            for metric, ref in COMPARISONS:
                if (ref != "val_bpb" and not has_eval) or not metric_values(g["rows"], metric) \
                        or not metric_values(c["rows"], ref):
                    continue
                values, ref_values = metric_values(g["rows"], metric), metric_values(c["rows"], ref)
                test = seed_test(g, c, metric, ref, n_boot, boot_seed)
                tests.append({
                    "group": g["label"], "control": c["label"], "metric": metric, "control_metric": ref,
                    "n": len(values), "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else None,
                    "control_n": len(ref_values), "control_mean": statistics.fmean(ref_values),
                    "control_std": statistics.stdev(ref_values) if len(ref_values) > 1 else None,
                    "diff": test["diff"], "seed_test": test,
                    "window_pairs": [] if metric == "val_bpb" else window_pairs(g, c, metric, ref, n_boot, boot_seed),
                })
    return tests


def paired_window_ci(row: dict, metric: str, other: dict, ref: str, n_boot: int, boot_seed: int) -> tuple:
    """(paired window bootstrap of row's metric - other's ref, None) or (None, why not)."""
    a, b = window_cell(row, metric), window_cell(other, ref)
    if a is None or b is None:
        return None, NO_WINDOWS
    if not same_windows(window_set(row, metric), window_set(other, ref)):
        return None, "not scored on the same windows: no paired CI"
    return stats.window_bootstrap([a, b], n_boot, boot_seed), None


def window_pairs(group: dict, control: dict, metric: str, ref: str, n_boot: int, boot_seed: int) -> list[dict]:
    """Per seed both groups have: the paired bootstrap CI over windows of BPB(group cell, metric)
    - BPB(control cell, ref), where the two cells were scored on the same windows."""
    out = []
    for row in group["rows"]:
        other = next((r for r in control["rows"] if r["seed"] == row["seed"] and r["seed"] is not None), None)
        if other is None or row[metric] is None or other[ref] is None:
            continue
        ci, reason = paired_window_ci(row, metric, other, ref, n_boot, boot_seed)
        out.append({"seed": row["seed"], "diff": row[metric] - other[ref], "ci": ci, "reason": reason})
    return out


def tax_cells(rows: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """Per shared cell with a same-seed control of its scale and model: the Pure-AR tax measured three
    ways, side by side: the trainer's validation stream (val_bpb), the evaluation windows (ar) and
    the held-out windows (ar_heldout), the last two with their paired window CIs."""
    out = []
    for row in (r for r in rows if not r["control"] and r["seed"] is not None):
        for other in rows:
            if (not other["control"] or other["scale"] != row["scale"] or other["seed"] != row["seed"]
                    or architecture(other["model"]) != architecture(row["model"])):
                continue
            entry = {"run": row["run"], "cell": row["cell"], "seed": row["seed"], "control": other["run"],
                     "control_cell": other["cell"], "stream": row["val_bpb"] - other["val_bpb"]}
            for key in ("ar", "ar_heldout"):
                entry[key] = None
                if row[key] is not None and other[key] is not None:
                    ci, reason = paired_window_ci(row, key, other, key, n_boot, boot_seed)
                    entry[key] = {"diff": row[key] - other[key], "ci": ci, "reason": reason}
            out.append(entry)
    return out


def cell_cis(rows: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """Per cell and evaluated decoder: its BPB and the bootstrap CI over windows (or why none)."""
    out = []
    for row in rows:
        for m in dict.fromkeys(WINDOW_METRICS + VALID_DECODERS + ("ar_heldout",)):
            if row[m] is None:
                continue
            cell = window_cell(row, m)
            out.append({"run": row["run"], "seed": row["seed"], "cell": row["cell"], "metric": m, "bpb": row[m],
                        "ci": stats.window_bootstrap([cell], n_boot, boot_seed) if cell else None,
                        "reason": None if cell else NO_WINDOWS})
    return out


def best_valid(rows: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """Per evaluated cell: its valid decoder of lowest BPB (VALID_DECODERS order breaks ties) and,
    for a shared cell, the difference to each control of the same scale, model and seed (its
    Pure-AR `ar`), with the paired bootstrap CI over windows when the two were scored on the same
    windows (or why none)."""
    out = []
    for row in rows:
        if not row["valid_bpb"]:
            continue
        best = min(row["valid_bpb"], key=lambda d: (row["valid_bpb"][d], VALID_DECODERS.index(d)))
        entry = {"run": row["run"], "cell": row["cell"], "seed": row["seed"], "scale": row["scale"],
                 "size": row["size"], "control": row["control"], "best_decoder": best,
                 "best_bpb": row["valid_bpb"][best], "candidates": dict(row["valid_bpb"]), "comparisons": []}
        for other in rows:
            if (row["control"] or not other["control"] or other["scale"] != row["scale"]
                    or architecture(other["model"]) != architecture(row["model"])
                    or other["seed"] != row["seed"] or row["seed"] is None or other["ar"] is None):
                continue
            ci, reason = paired_window_ci(row, best, other, "ar", n_boot, boot_seed)
            entry["comparisons"].append({"control": other["run"], "control_cell": other["cell"],
                                         "control_ar_bpb": other["ar"], "diff": entry["best_bpb"] - other["ar"],
                                         "ci": ci, "reason": reason})
        out.append(entry)
    return out


def bidir_entries(rows: list[dict], cis: list[dict], floor: dict | None, n_boot: int = DEFAULT_N_BOOT,
                  boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """Per cell whose eval scored the bidirectional pass (bidir_* decoders or the ELBO): every valid
    code next to the ELBO, the ELBO minus each code with a paired window CI, and with a floor each
    one's z against it."""
    out = []
    for row in rows:
        if row["elbo"] is None and not any(row[d] is not None for d in BIDIR_DECODERS):
            continue
        codes = {}
        for d in ("ar", "cf_valid", *BIDIR_DECODERS):
            if row[d] is None:
                continue
            ci = next((c["ci"] for c in cis if c["cell"] == row["cell"] and c["metric"] == d), None)
            se = (ci["hi"] - ci["lo"]) / (2 * stats.Z_975) if ci and ci["hi"] > ci["lo"] else None
            codes[d] = {"bpb": row[d], "se": se}
        elbo_vs = {}
        if row["elbo"] is not None:
            codes["elbo"] = {"bpb": row["elbo"]["bpb"], "se": row["elbo"]["se"], "bound": True}
            for d in (d for d in codes if d != "elbo"):
                ci, reason = paired_window_ci(row, "elbo", row, d, n_boot, boot_seed)
                elbo_vs[d] = {"diff": row["elbo"]["bpb"] - row[d], "ci": ci, "reason": reason}
        if floor is not None:
            for c in codes.values():
                c["minus_floor"] = c["bpb"] - floor["bits_per_byte"]
                c["z"] = c["minus_floor"] / c["se"] if c["se"] else None
                c["below_floor"] = bool(c["z"] is not None and c["z"] < -2.0)
        out.append({"run": row["run"], "cell": row["cell"], "seed": row["seed"], "noise": row["noise"],
                    "cdm_weight": row["cdm_weight"], "codes": codes, "elbo_minus": elbo_vs,
                    "one_fill": one_fill_codes(row)})
    return out


def one_fill_codes(row: dict) -> dict:
    """The bidirectional codes with ONE fill realization: the eval's own when it ran one fill (a mask
    fill always does), else eval_cf_fill1.json's when present; {} otherwise."""
    if row["eval"] is not None and row["eval"].get("n_random") == 1:
        return {d: {"bpb": row[d], "source": "the evaluation (one fill)"} for d in BIDIR_DECODERS if row[d] is not None}
    if row["one_fill"] is not None:
        return {d: {"bpb": v, "source": "eval_cf_fill1.json"} for d, v in row["one_fill"]["bpb"].items()
                if d in BIDIR_DECODERS}
    return {}


# ----------------------------------------------------------------------------- against size

# The differences set against model size: (key, shared metric, control metric).
SCALE_QUANTITIES = (("tax_stream", "val_bpb", "val_bpb"), ("tax", "ar", "ar"), ("tax_heldout", "ar_heldout", "ar_heldout"))


def scale_points(groups: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """Per shared group and its control of the same scale (same architecture up to the mask row):
    the Pure-AR tax on the trainer's stream, the evaluation windows and the held-out windows, and the
    best valid decoder's gap (the group's decoder of lowest seed-mean BPB - control ar), each a seed
    comparison (seed_test)."""
    out = []
    for g in (g for g in groups if not g["control"]):
        for c in controls_of(g, groups):
            if c["stats"]["ar"] is None or g["stats"]["ar"] is None:
                continue
            best = min((m for m in VALID_DECODERS if g["stats"][m] is not None),
                       key=lambda m: (g["stats"][m]["mean"], VALID_DECODERS.index(m)))
            point = {"group": g["label"], "control": c["label"], "scale": g["scale"], "params": c["params"],
                     "cdm_weight": g["cdm_weight"], "noise": g["noise"], "n": g["n"], "control_n": c["n"],
                     "best_decoder": best}
            for key, metric, ref in SCALE_QUANTITIES + (("best_gap", best, "ar"),):
                has = g["stats"][metric] is not None and c["stats"][ref] is not None
                point[key] = seed_test(g, c, metric, ref, n_boot, boot_seed) if has else None
            out.append(point)
    return out


def scale_fits(points: list[dict]) -> dict:
    """Per shared weight and noise, for the tax on the trainer's stream and on the windows: OLS in
    log10(control params) through every seed's own paired difference (report.stats.ols_line, df =
    points - 2), and beside it the verdict of the earlier method (weighted LS on the size means with
    1/se² weights, Birge-scaled) for the footnote."""
    fits = {}
    for weight, noise in dict.fromkeys((p["cdm_weight"], p["noise"]) for p in points):
        mine = sorted((p for p in points if p["cdm_weight"] == weight and p["noise"] == noise),
                      key=lambda p: p["params"] or 0)
        for quantity in ("tax_stream", "tax", "tax_heldout"):
            usable = [p for p in mine if p[quantity] is not None and p[quantity]["paired"] and p["params"]]
            if len({p["params"] for p in usable}) < 2:  # one size: nothing to set against size
                continue
            name = f"{quantity} w={weight_text(weight)}{noise_text(noise, None)}"
            x = [math.log10(p["params"]) for p in usable for _ in p[quantity]["per_seed_diffs"]]
            y = [d for p in usable for d in p[quantity]["per_seed_diffs"].values()]
            entry = {"quantity": quantity, "cdm_weight": weight, "noise": noise, "x": "log10(params of the control)",
                     "points": [p["group"] for p in usable], "fit": None, "reason": None, "other_methods": {}}
            if len({p["params"] for p in usable}) < 3:
                entry["reason"] = f"{len({p['params'] for p in usable})} sizes; a trend against size needs 3 or more"
            else:
                entry["fit"] = stats.ols_line(x, y)
                cis = [p[quantity]["ci"] for p in usable]
                if all(ci is not None and ci["hi"] > ci["lo"] for ci in cis):
                    entry["other_methods"]["weighted_birge"] = stats.weighted_line_birge(
                        [math.log10(p["params"]) for p in usable], [p[quantity]["diff"] for p in usable],
                        [(ci["hi"] - ci["lo"]) / (2 * stats.Z_975) for ci in cis])
            fits[name] = entry
    return fits
