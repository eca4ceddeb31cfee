"""Markdown of a summary: every table with a header and a separator row (so it renders), every BPB
header saying that lower is better, every interval's method named in the footnote under its table.
"""

from __future__ import annotations

import statistics

from meadow_golf.report import stats
from meadow_golf.report.rows import (METRIC_HEADER, METRICS, NO_WINDOWS, VALID_DECODERS, BIDIR_DECODERS,
                                     params_text)

LOWER = "lower is better"
CI_LEVEL = stats.CI_LEVEL
TABLE_COLUMNS = ("run", "stands in for", "seed", "params", "objective", *(h for _, h in METRICS), "steps",
                 "tokens seen")


def num(value, fmt: str = ".4f") -> str:
    return "—" if value is None else format(value, fmt)


def p_text(p) -> str:
    if p is None:
        return "—"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.2e}"


def mean_std_text(s: dict | None) -> str:
    if s is None:
        return "—"
    if s["std"] is None:
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def lower_is_better(header: str) -> str:
    """A BPB column's header with the direction a reader needs (bits per byte: fewer is better)."""
    # A header that already ends in a note (the CF label must read exactly so) keeps it whole.
    return f"{header}, {LOWER}" if header.endswith(")") else f"{header} ({LOWER})"


def md_table(header: tuple | list, body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def ci_text(ci: dict | None, reason: str | None = None, signed: bool = False) -> str:
    if ci is None:
        return reason or "—"
    fmt = "+.4f" if signed else ".4f"
    return f"[{format(ci['lo'], fmt)}, {format(ci['hi'], fmt)}]"


def metric_label(metric: str) -> str:
    """The column header of a metric: cf_published's says it is not a valid code length."""
    return METRIC_HEADER.get(metric, metric)


def df_text(result: dict | None) -> str:
    """A paired test's df is an integer (k - 1); Welch's is fractional."""
    if result is None:
        return "—"
    return str(result["df"]) if isinstance(result["df"], int) else f"{result['df']:.1f}"


def runs_table(rows: list[dict]) -> list[str]:
    body = [[r["run"], r["stands_in_for"], str(r["seed"]), params_text(r["params"]), r["objective"],
             *(num(r[m]) for m, _ in METRICS), str(r["steps"]), f"{r['tokens_seen']:,}"] for r in rows]
    bpb_headers = {h for _, h in METRICS}
    return md_table([lower_is_better(h) if h in bpb_headers else h for h in TABLE_COLUMNS], body)


def groups_table(groups: list[dict]) -> list[str]:
    header = ("group", "stands in for", "n", "seeds", *(lower_is_better(h) for _, h in METRICS), "steps (mean)")
    body = []
    for g in groups:
        steps = statistics.fmean(r["steps"] for r in g["rows"])
        body.append([g["label"], g["scale"], str(g["n"]), ", ".join(str(s) for s in g["seeds"]),
                     *(mean_std_text(g["stats"][m]) for m, _ in METRICS), f"{steps:.0f}"])
    return md_table(header, body)


def cis_table(cis: list[dict]) -> list[str]:
    header = ("run", "seed", "decoder", lower_is_better("BPB"), f"{CI_LEVEL:.0%} CI over windows")
    body = [[c["run"], str(c["seed"]), metric_label(c["metric"]), f"{c['bpb']:.4f}", ci_text(c["ci"], c["reason"])]
            for c in cis]
    return md_table(header, body)


def per_seed_text(test: dict) -> str:
    return ", ".join(f"{seed}: {d:+.4f}" for seed, d in test["per_seed_diffs"].items()) or "—"


def test_cells(test: dict) -> list[str]:
    """diff, comparison, t, df, p, CI of one seed comparison (report.compare.seed_test)."""
    r = test["result"]
    method = test["method"] if test["reason"] is None else f"{test['method']}: {test['reason']}"
    return [num(test["diff"], "+.4f"), method, num(r and r["t"], ".3f"), df_text(r), p_text(r and r["p"]),
            ci_text(test["ci"], None, True)]


def tests_table(tests: list[dict]) -> list[str]:
    header = ("group", "metric", "control (its metric)", "per-seed paired differences",
              "diff (< 0: lower BPB than the control, better)", "comparison", "t", "df", "p (two-sided)",
              f"{CI_LEVEL:.0%} CI of diff (method below)")
    body = [[t["group"], metric_label(t["metric"]), f"{t['control']} ({metric_label(t['control_metric'])})",
             per_seed_text(t["seed_test"]), *test_cells(t["seed_test"])] for t in tests]
    return md_table(header, body)


def footnote_tests(n_boot: int, boot_seed: int) -> str:
    return ("Method: paired where at least two seeds are in both groups (same seed = same initialization and data "
            "order): diff = the mean of the per-seed differences over those common seeds only, a paired t-test "
            "(df = k − 1), and the 95% interval mean ± sqrt((t_{k−1} · sd/√k)² + (1.96 · sd_W)²): the t interval "
            "over seeds widened by the window-sampling error that every seed shares (sd_W: bootstrap of the "
            f"seed-mean difference with ONE resampled window set applied to every seed and both cells, {n_boot} "
            f"resamples, numpy default_rng({boot_seed}); report/stats.py). The trainer's validation stream "
            "(val_bpb) has no per-window file: its interval is the t interval alone. Unpaired (Welch t and its "
            "interval; diff = difference of the group means) only where fewer than two seeds pair. With one common "
            "seed: its difference with a paired window bootstrap (window sampling only, no test over seeds). No "
            "interval over seeds is a percentile bootstrap. Two-sided p.")


def pairs_table(tests: list[dict]) -> list[str]:
    header = ("group", "seed", "metric", "control", "diff (same seed; < 0: lower BPB than the control, better)",
              f"{CI_LEVEL:.0%} paired CI over windows")
    body = [[t["group"], str(p["seed"]), metric_label(t["metric"]), f"{t['control']} ({metric_label(t['control_metric'])})",
             f"{p['diff']:+.4f}", ci_text(p["ci"], p["reason"], True)] for t in tests for p in t["window_pairs"]]
    return md_table(header, body)


def footnote_pairs(n_boot: int, boot_seed: int) -> str:
    return ("Method: for each seed both groups have, the group cell's BPB minus the control cell's, with a paired "
            f"percentile bootstrap over windows ({n_boot} resamples, numpy default_rng({boot_seed})): one set of "
            "resampled windows serves both cells, so it applies only to cells scored on the same windows (same "
            "offsets). It counts window sampling for these two trained models, not seed-to-seed spread.")


def footnote_cis(n_boot: int, boot_seed: int, cis: list[dict]) -> str:
    """The method; the sentence on a missing per-window file only where some row lacks its CI."""
    missing = (f" {NO_WINDOWS}: the eval JSON names no per-window file, so no CI is given."
               if any(c["ci"] is None for c in cis) else "")
    return (f"Method: percentile bootstrap over the evaluation windows ({n_boot} resamples, numpy "
            f"default_rng({boot_seed})); each resample draws N windows with replacement and recomputes "
            "BPB = Σ NLL / (ln 2 · Σ bytes) on them. It counts the sampling of windows only, not the "
            f"seed-to-seed spread of training.{missing}")


def tax_cells_table(entries: list[dict]) -> list[str]:
    """The held-out columns only where some cell has a held-out evaluation."""
    keys = ("ar", "ar_heldout") if any(e["ar_heldout"] for e in entries) else ("ar",)
    header = ["shared cell", "seed", "control (same seed)",
              "tax on the trainer's validation stream (val_bpb; < 0: lower BPB than the control)",
              "tax on the evaluation windows (ar)", f"{CI_LEVEL:.0%} paired CI over windows"]
    if "ar_heldout" in keys:
        header += ["tax on the held-out windows (ar)", f"{CI_LEVEL:.0%} paired CI over windows"]
    body = []
    for e in entries:
        cells = [e["run"], str(e["seed"]), e["control"], f"{e['stream']:+.4f}"]
        for key in keys:
            x = e[key]
            cells += ["—", "—"] if x is None else [f"{x['diff']:+.4f}", ci_text(x["ci"], x["reason"], True)]
        body.append(cells)
    return md_table(header, body)


def footnote_tax_cells(n_boot: int, boot_seed: int) -> str:
    return ("Method: the Pure-AR tax of a shared cell = its Pure-AR BPB minus that of the control of the same size "
            "and seed (> 0: joint training costs the causal pass), measured three ways. Trainer's stream: the "
            "trainer's final validation (val_bpb) on the first --val_tokens validation tokens, the stream the "
            "grid's best weight was chosen on. Evaluation windows: eval_cf.py's random windows (they may overlap "
            "that stream). Held-out windows, where evaluated: eval_cf.py --full_val --val_skip on the validation "
            "tokens after the stream (disjoint from it; the int6 artifact of each cell). Window CIs: paired percentile bootstrap "
            f"over windows ({n_boot} resamples, numpy default_rng({boot_seed})), window sampling only.")


def best_valid_table(best: list[dict]) -> list[str]:
    header = ("run", "stands in for", "seed", "best valid decoder", lower_is_better("BPB"), "valid decoders (BPB)",
              "control (same seed)", "control Pure-AR BPB", "diff (< 0: better than the control)",
              f"{CI_LEVEL:.0%} paired CI over windows")
    body = []
    for b in best:
        candidates = ", ".join(f"{d} {v:.4f}" for d, v in b["candidates"].items())
        first = [b["run"], b["scale"], str(b["seed"]), b["best_decoder"], f"{b['best_bpb']:.4f}", candidates]
        if not b["comparisons"]:
            why = "— (a control)" if b["control"] else "— (no evaluated control of this seed and scale)"
            body.append(first + [why, "—", "—", "—"])
        for c in b["comparisons"]:
            body.append(first + [c["control"], f"{c['control_ar_bpb']:.4f}", f"{c['diff']:+.4f}",
                                 ci_text(c["ci"], c["reason"], True)])
    return md_table(header, body)


def footnote_best_valid(n_boot: int, boot_seed: int) -> str:
    return ("Method: per cell, the valid decoder of lowest BPB among those its eval ran (" + ", ".join(VALID_DECODERS)
            + "; all valid code lengths on the same windows; cf_published is never a candidate). diff = its BPB − "
            "the BPB of the Pure-AR decoder (ar) of the control of the same scale and seed (lower is better), with a "
            f"paired percentile bootstrap over windows ({n_boot} resamples, numpy default_rng({boot_seed})) when the "
            "two cells were scored on the same windows. The decoder is chosen on the same windows the CI resamples, "
            "so the CI does not count that choice among the candidates (it is slightly optimistic for the best).")


def bidir_table(entries: list[dict], floor: dict | None) -> list[str]:
    names = ("ar", "cf_valid", *BIDIR_DECODERS, "elbo")
    label = {"elbo": "elbo (bound on the random-order mixture code) ± se"}
    one_fill = any(e["one_fill"] for e in entries)
    header = ["run", "seed", *(lower_is_better(label.get(n, n + " BPB")) for n in names),
              *(f"elbo − {d} (paired {CI_LEVEL:.0%} CI over windows)" for d in ("ar", *BIDIR_DECODERS)),
              *((lower_is_better(f"{d}, one fill") for d in BIDIR_DECODERS) if one_fill else ())]
    body = []
    for e in entries:
        cells = []
        for n in names:
            c = e["codes"].get(n)
            if c is None:
                cells.append("—")
                continue
            text = f"{c['bpb']:.4f}" + (f" ± {c['se']:.4f}" if n == "elbo" else "")
            if floor is not None and c.get("z") is not None:
                text += f" (z {c['z']:+.1f}{', BELOW the floor' if c['below_floor'] else ''})"
            cells.append(text)
        for d in ("ar", *BIDIR_DECODERS):
            x = e["elbo_minus"].get(d)
            cells.append("—" if x is None else f"{x['diff']:+.4f} {ci_text(x['ci'], x['reason'], True)}")
        if one_fill:
            cells += [f"{e['one_fill'][d]['bpb']:.4f}" if d in e["one_fill"] else "—" for d in BIDIR_DECODERS]
        body.append([e["run"], str(e["seed"]), *cells])
    return md_table(header, body)


def footnote_bidir(floor: dict | None, n_boot: int, boot_seed: int) -> str:
    text = ("Every BPB column is a valid code length on the same windows: ar and cf_valid as above; bidir_l2r and "
            "bidir_confidence are chain-rule codes of the bidirectional pass (each token scored with every "
            "not-yet-decoded position hidden; left to right, or the most confident hidden position next, chosen "
            "from decoded tokens only; METHOD.md §8). elbo: the absorbing diffusion ELBO in its discrete, "
            "finite-variance form (eval/elbo.py), ± its standard error over windows; it is an upper bound on the "
            "code of the model's random-order MIXTURE (a valid code length in expectation), not on any one order's "
            "code: it can lie above or below bidir_l2r and bidir_confidence. elbo − code: paired percentile "
            f"bootstrap over windows ({n_boot} resamples, numpy default_rng({boot_seed})). Only a model with a mask "
            "token has an ELBO. The bidir columns of a random-fill model average the NLL over its fills (in "
            "expectation the NLL of one random fill, and above the mixture over fills); the one-fill columns, where "
            "shown, put both noises on one fill realization each: a mask fill is one fill, and a random-fill model "
            "is re-scored with --n_random 1 (eval_cf_fill1.json).")
    if floor is not None:
        text += (f" Floor: the source's exact entropy rate, {floor['bits_per_byte']:.4f} bits per byte; "
                 "z = (BPB − floor) / se with the window bootstrap's se (the ELBO: its own se); z < −2 would flag "
                 "a code below the floor, which no valid code can be on average.")
    return text


SCALE_LABELS = {"tax_stream": "tax, trainer's stream (val_bpb)", "tax": "tax, evaluation windows (ar)",
                "tax_heldout": "tax, held-out windows (ar)"}


def scale_table(points: list[dict]) -> list[str]:
    header = ("shared group", "control", "params (control)", "seeds (shared / control)", "measure",
              "per-seed paired differences", "diff (< 0: lower BPB than the control)", "comparison", "t", "df",
              "p (two-sided)", f"{CI_LEVEL:.0%} CI of diff (method below)")
    body = []
    for p in sorted(points, key=lambda p: (p["params"] or 0, p["cdm_weight"])):
        first = [p["group"], p["control"], params_text(p["params"]), f"{p['n']} / {p['control_n']}"]
        for key in ("tax_stream", "tax", "tax_heldout", "best_gap"):
            test = p[key]
            if test is None:
                continue
            label = SCALE_LABELS.get(key, f"best valid decoder ({p['best_decoder']}) − control ar")
            body.append(first + [label, per_seed_text(test), *test_cells(test)])
    return md_table(header, body)


def fit_text(fit: dict) -> str:
    ci = fit["slope_ci"]
    return f"{fit['slope']:+.4f} per decade of params, {ci['level']:.0%} CI [{ci['lo']:+.4f}, {ci['hi']:+.4f}]"


def fits_lines(fits: dict) -> list[str]:
    lines = []
    for name, f in fits.items():
        if f["fit"] is None:
            lines.append(f"- {name}: no line against size ({f['reason']}).")
            continue
        fit = f["fit"]
        verdict = "excludes zero" if fit["slope_ci"]["lo"] > 0 or fit["slope_ci"]["hi"] < 0 else "includes zero"
        lines.append(f"- {name}: slope {fit_text(fit)} ({verdict}; OLS on {fit['n_points']} seed-level differences, "
                     f"t with df {fit['df']}, p {p_text(fit['p'])}).")
    return lines


def other_fit_lines(fits: dict) -> list[str]:
    other = [(name, f["other_methods"]["weighted_birge"]) for name, f in fits.items()
             if f["fit"] is not None and "weighted_birge" in f["other_methods"]]
    if not other:
        return []
    return ["Other methods' verdicts (not used for any claim): weighted least squares on the size means with "
            "weights 1/se² (se = CI width / 3.92 of the intervals above), the slope's se Birge-scaled, t with "
            "k − 2 df: " + "; ".join(f"{name} {fit_text(fit)}" for name, fit in other) + "."]


def footnote_scale(n_boot: int, boot_seed: int) -> str:
    return ("Method: per size, the shared group against the control group of the same size, each measure a seed "
            "comparison as in the comparisons above (paired over the common seeds, t with k − 1 df widened by the "
            f"shared-window bootstrap, {n_boot} resamples, numpy default_rng({boot_seed}); the trainer's stream: t "
            "alone). Best valid decoder: the shared group's valid decoder of lowest seed-mean BPB on the evaluation "
            "windows (chosen on them, so its interval is slightly optimistic). Fit: ordinary least squares of every "
            "seed's own paired difference on log10(params of the control), the slope's t interval with "
            "(points − 2) df (report/stats.py ols_line; METHOD.md §9 says why this method, §11 the intervals).")


def markdown(s: dict) -> str:
    """The whole results.md from a summary's parts (report.summarize.build)."""
    n_boot, boot_seed = s["n_boot"], s["boot_seed"]
    lines = [f"# {s['title']}", ""]
    lines += runs_table(s["rows"])
    lines += ["",
              "Pure-AR BPB, CF BPB and cf_valid BPB: eval_cf.py's decoders ar, cf_published and cf_valid, all "
              "on the same windows. CF BPB is the coarse-to-fine decoder as first published: its pass 1 "
              "conditions on tokens decoded later, so it is NOT a valid code length (METHOD.md §6). "
              "val_bpb (trainer): the trainer's last validation (Pure-AR). — : not evaluated."]
    matched = [r for r in s["rows"] if r["matched_to"]]
    if matched:
        lines += ["", "Token-matched controls (MATCH=tokens) trained for exactly the tokens of their shared run: "
                  + "; ".join(f"{r['run']} seed {r['seed']} ← {r['matched_to']} ({r['tokens_seen']:,} tokens)"
                              for r in matched) + "."]
    sections = [
        (s["cis"], "Bootstrap CIs over windows", cis_table, footnote_cis(n_boot, boot_seed, s["cis"])),
        ([g for g in s["groups"] if g["n"] > 1], "Seed groups (mean ± sample std over seeds)", groups_table, None),
        ([t for t in s["tests"] if t["n"] > 1 or t["control_n"] > 1], "Comparisons with the control over seeds",
         tests_table, footnote_tests(n_boot, boot_seed)),
        (s["tests"] if any(t["window_pairs"] for t in s["tests"]) else [],
         "Same-seed differences, paired over windows", pairs_table, footnote_pairs(n_boot, boot_seed)),
        (s["tax_cells"], "The Pure-AR tax per cell, on the trainer's stream and on windows",
         tax_cells_table, footnote_tax_cells(n_boot, boot_seed)),
        (s["best"], "Best valid decoder per cell", best_valid_table, footnote_best_valid(n_boot, boot_seed)),
        (s["bidir"], "The bidirectional pass: chain-rule codes and the ELBO",
         lambda b: bidir_table(b, s["floor"]), footnote_bidir(s["floor"], n_boot, boot_seed)),
    ]
    for items, heading, table, footnote in sections:
        if items:
            lines += ["", f"## {heading}", ""] + table(items) + ([] if footnote is None else ["", footnote])
    points = s["points"]
    if points and len({p["scale"] for p in points}) > 1:
        lines += ["", "## Against model size", ""] + scale_table(points)
        lines += [""] + fits_lines(s["fits"])
        lines += ["", footnote_scale(n_boot, boot_seed)]
        other = other_fit_lines(s["fits"])
        lines += ["", *other] if other else []
    return "\n".join(lines) + "\n"
