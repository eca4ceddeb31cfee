"""Summarize trained (and evaluated) runs: results.json files -> a table, seed statistics, a plot.

    python scripts/summarize.py runs/quickstart/cells/*/results.json          # print the table
    python scripts/summarize.py --out_dir OUT CELL/results.json ...           # + OUT/results.{md,json,png}

Each argument is a trainer's results.json (or the folder holding it). Next to it, read when
present: eval_cf.json (eval_cf.py's scores; final_model.eval_cf.json, eval_cf.py's own default
name, is accepted too) and cell.json (written by the orchestrators: scale label, matching).

Columns: the original table's (run, params, objective, Pure-AR BPB, CF BPB) plus cf_valid BPB,
the trainer's final val_bpb, steps and tokens seen. Pure-AR BPB, CF BPB and cf_valid BPB are
eval_cf.py's decoders ar, cf_published and cf_valid on the same windows. CF BPB is the decoder
as first published and is NOT a valid code length (METHOD.md §6); every header showing it says so.

Runs with the same configuration and different seeds form a group: mean ± sample standard
deviation (n - 1). Each group of shared runs (cdm_weight > 0) is compared with each control
group (cdm_weight 0) of the same scale: a one-sample Student t-test of the group's values
against the control group's MEAN Pure-AR BPB (t = (mean - mu0) / (s / sqrt(n)), df = n - 1,
two-sided p), and Welch's two-sample t-test, which also counts the control's own seed-to-seed
variance, where the control has two seeds or more. The Student t distribution is computed here
(regularized incomplete beta function by continued fraction), numpy-free.

The plot needs matplotlib (pip install -e '.[plot]'); without it results.png is skipped with a
message.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
from pathlib import Path

from challenge_format import atomic_write_bytes

EVAL_NAMES = ("eval_cf.json", "final_model.eval_cf.json")
CELL_JSON = "cell.json"
CF_HEADER = "CF BPB (published; NOT a valid code length)"
# (row key, column header) of the BPB metrics, in table order.
METRICS = (
    ("ar", "Pure-AR BPB"),
    ("cf_published", CF_HEADER),
    ("cf_valid", "cf_valid BPB"),
    ("val_bpb", "val_bpb (trainer)"),
)
METRIC_HEADER = dict(METRICS)
# What a shared group is compared with the control's Pure-AR mean on: the valid two-pass
# decoder, the model's own causal pass, and the published number (the original's claim).
TESTED_METRICS = ("cf_valid", "ar", "cf_published")
TABLE_COLUMNS = ("run", "seed", "params", "objective", *(h for _, h in METRICS), "steps", "tokens seen")


class InputError(ValueError):
    """Bad input (reported as one `error:` line)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one `error:` line instead of the usage block."""

    def error(self, message):
        raise InputError(message)


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


def one_sample_t(values: list[float], mu0: float) -> dict | None:
    """t = (mean - mu0) / (s / sqrt(n)), df = n - 1, two-sided p; None if n < 2 or s == 0."""
    n = len(values)
    if n < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    if sd == 0:
        return None
    t = (mean - mu0) / (sd / math.sqrt(n))
    return {"t": t, "df": n - 1, "p": t_two_sided_p(t, n - 1)}


def welch_t(a: list[float], b: list[float]) -> dict | None:
    """Welch's two-sample t-test (Welch-Satterthwaite df); None unless both have n >= 2 and s > 0."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return None
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return {"t": t, "df": df, "p": t_two_sided_p(t, df)}


# ----------------------------------------------------------------------------- loading


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise InputError(f"{path}: unreadable JSON ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object")
    return value


def weight_text(w: float) -> str:
    """0 -> '0', 0.3 -> '0.3', 1.0 -> '1.0' (the original table's spelling)."""
    if w == 0:
        return "0"
    return f"{w:.1f}" if round(w, 1) == w else f"{w:g}"


def params_text(n) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def load_row(path: Path) -> dict:
    """One run: results.json (+ eval_cf.json, cell.json next to it) -> a flat row."""
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"{path}: not found")
    res = read_json(path)
    missing = [k for k in ("final_val_bpb", "steps", "tokens_seen", "config") if k not in res]
    if missing:
        raise InputError(f"{path}: not a trainer results.json (missing {', '.join(missing)})")
    cell = path.parent
    meta = read_json(cell / CELL_JSON) if (cell / CELL_JSON).is_file() else {}
    model, train = res["config"].get("model", {}), res["config"].get("train", {})
    weight = float(res.get("cdm_weight", train.get("cdm_weight", 0.0)))
    control = weight == 0
    scale = meta.get("scale") or f"{model.get('num_layers', '?')}L"
    match = meta.get("match") if control else None
    row = {
        "cell": cell.name, "results": str(path), "scale": scale, "cdm_weight": weight, "control": control,
        "match": match, "matched_to": meta.get("matched_to") or None, "seed": train.get("seed"),
        "params": res.get("params"), "steps": res["steps"], "tokens_seen": res["tokens_seen"],
        "train_seconds": res.get("train_seconds"), "val_bpb": res["final_val_bpb"],
        "model": model, "seq_len": train.get("seq_len"), "batch_tokens": train.get("batch_tokens"),
        "train_budget_secs": train.get("train_budget_secs"), "step_cap": train.get("steps"),
        "val_tokens": train.get("val_tokens"),
        "ar": None, "cf_published": None, "cf_valid": None, "eval": None,
    }
    label = f"{scale} w={weight_text(weight)}"
    if control:
        label += " (control, token-matched)" if match == "tokens" else " (control)"
    row["run"] = label
    row["objective"] = "AR only" if control else f"AR + {weight_text(weight)} × D3PM"
    for name in EVAL_NAMES:
        if (cell / name).is_file():
            ev = read_json(cell / name)
            decoders = ev.get("decoders")
            if not isinstance(decoders, dict):
                raise InputError(f"{cell / name}: not an eval_cf.py JSON (no decoders)")
            for key in ("ar", "cf_published", "cf_valid"):
                if key in decoders:
                    if not isinstance(decoders[key], dict) or "bpb" not in decoders[key]:
                        raise InputError(f"{cell / name}: decoder {key} has no bpb")
                    row[key] = decoders[key]["bpb"]
            proto = ev.get("protocol", {})
            row["eval"] = {"json": str(cell / name), "mode": proto.get("mode"), "windows": proto.get("n_seqs"),
                           "seq_len": proto.get("seq_len"),
                           "consistency_passed": ev.get("consistency", {}).get("passed")}
            break
    return row


# ----------------------------------------------------------------------------- groups and tests


def group_key(row: dict) -> str:
    """Same configuration up to the seed. A token-matched control's step cap follows its
    matched run, so it is not part of that key."""
    key = {k: row[k] for k in ("scale", "cdm_weight", "match", "model", "seq_len", "batch_tokens",
                               "train_budget_secs", "val_tokens")}
    if row["match"] != "tokens":
        key["step_cap"] = row["step_cap"]
    return json.dumps(key, sort_keys=True)


def metric_values(rows: list[dict], metric: str) -> list[float]:
    return [r[metric] for r in rows if r[metric] is not None]


def describe(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None}


def build_groups(rows: list[dict]) -> list[dict]:
    groups: dict[str, dict] = {}
    for row in rows:
        g = groups.setdefault(group_key(row), {"label": row["run"], "scale": row["scale"],
                                               "cdm_weight": row["cdm_weight"], "control": row["control"],
                                               "match": row["match"], "model": row["model"], "rows": []})
        g["rows"].append(row)
    out = []
    for g in groups.values():
        g["seeds"] = [r["seed"] for r in g["rows"]]
        g["n"] = len(g["rows"])
        g["stats"] = {m: describe(metric_values(g["rows"], m)) for m, _ in METRICS}
        out.append(g)
    return out


def reference_metric(control: dict) -> str:
    """The control's Pure-AR BPB: eval_cf's ar decoder, or the trainer's val_bpb without an eval."""
    return "ar" if control["stats"]["ar"] is not None else "val_bpb"


def build_tests(groups: list[dict]) -> list[dict]:
    tests = []
    for g in groups:
        if g["control"] or g["n"] < 2:
            continue
        for c in groups:
            if not c["control"] or c["scale"] != g["scale"] or c["model"] != g["model"]:
                continue
            ref = reference_metric(c)
            ref_values = metric_values(c["rows"], ref)
            mu0 = statistics.fmean(ref_values)
            metrics = TESTED_METRICS if ref == "ar" else ("val_bpb",)
            for m in metrics:
                values = metric_values(g["rows"], m)
                if len(values) < 2:
                    continue
                tests.append({
                    "group": g["label"], "control": c["label"], "metric": m, "n": len(values),
                    "mean": statistics.fmean(values), "std": statistics.stdev(values),
                    "control_metric": ref, "control_mean": mu0, "control_n": len(ref_values),
                    "control_std": statistics.stdev(ref_values) if len(ref_values) > 1 else None,
                    "diff": statistics.fmean(values) - mu0,
                    "one_sample": one_sample_t(values, mu0), "welch": welch_t(values, ref_values),
                })
    return tests


# ----------------------------------------------------------------------------- text


def num(value, fmt: str = ".4f") -> str:
    return "—" if value is None else format(value, fmt)


def p_text(p) -> str:
    if p is None:
        return "—"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.2e}"


def mean_std_text(stats: dict | None) -> str:
    if stats is None:
        return "—"
    if stats["std"] is None:
        return f"{stats['mean']:.4f}"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def md_table(header: tuple | list, body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def sort_rows(rows: list[dict]) -> list[dict]:
    """By size, then control first, then weight, then wall-clock before token matching; seeds in input order."""
    return sorted(rows, key=lambda r: (r["params"] or 0, r["scale"], not r["control"], r["cdm_weight"],
                                       r["match"] == "tokens"))


def runs_table(rows: list[dict]) -> list[str]:
    body = [[r["run"], str(r["seed"]), params_text(r["params"]), r["objective"],
             *(num(r[m]) for m, _ in METRICS), str(r["steps"]), f"{r['tokens_seen']:,}"] for r in rows]
    return md_table(TABLE_COLUMNS, body)


def groups_table(groups: list[dict]) -> list[str]:
    header = ("group", "n", "seeds", *(h for _, h in METRICS), "steps (mean)")
    body = []
    for g in groups:
        steps = statistics.fmean(r["steps"] for r in g["rows"])
        body.append([g["label"], str(g["n"]), ", ".join(str(s) for s in g["seeds"]),
                     *(mean_std_text(g["stats"][m]) for m, _ in METRICS), f"{steps:.0f}"])
    return md_table(header, body)


def tests_table(tests: list[dict]) -> list[str]:
    header = ("group", "metric", "n", "mean ± std", "control mean Pure-AR (n)", "diff", "t", "df", "p (two-sided)",
              "Welch t", "Welch df", "Welch p")
    body = []
    for t in tests:
        one, welch = t["one_sample"], t["welch"]
        control = f"{t['control_mean']:.4f} ({t['control_n']}, {t['control']})"
        body.append([t["group"], METRIC_HEADER[t["metric"]], str(t["n"]), f"{t['mean']:.4f} ± {t['std']:.4f}",
                     control, f"{t['diff']:+.4f}",
                     num(one and one["t"], ".3f"), str(one["df"]) if one else "—", p_text(one and one["p"]),
                     num(welch and welch["t"], ".3f"), num(welch and welch["df"], ".1f"),
                     p_text(welch and welch["p"])])
    return md_table(header, body)


def markdown(title: str, rows: list[dict], groups: list[dict], tests: list[dict]) -> str:
    lines = [f"# {title}", ""]
    lines += runs_table(rows)
    lines += ["",
              "Pure-AR BPB, CF BPB and cf_valid BPB: eval_cf.py's decoders ar, cf_published and cf_valid, all "
              "on the same windows. CF BPB is the coarse-to-fine decoder as first published: its pass 1 "
              "conditions on tokens decoded later, so it is NOT a valid code length (METHOD.md §6). "
              "val_bpb (trainer): the trainer's last validation (Pure-AR). — : not evaluated."]
    matched = [r for r in rows if r["matched_to"]]
    if matched:
        lines += ["", "Token-matched controls (MATCH=tokens) trained for exactly the tokens of their shared run: "
                  + "; ".join(f"{r['run']} seed {r['seed']} ← {r['matched_to']} ({r['tokens_seen']:,} tokens)"
                              for r in matched) + "."]
    seed_groups = [g for g in groups if g["n"] > 1]
    if seed_groups:
        lines += ["", "## Seed groups (mean ± sample std over seeds)", ""]
        lines += groups_table(seed_groups)
    if tests:
        lines += ["", "## t-tests against the control", "",
                  "One-sample Student t-test of each shared group's values against mu0 = the control group's "
                  "MEAN Pure-AR BPB (t = (mean − mu0) / (s / √n), df = n − 1, two-sided p); Welch's two-sample "
                  "test also counts the control's seed-to-seed variance (— : the control has fewer than two "
                  "seeds). Lower BPB is better: a negative diff means below the control.", ""]
        lines += tests_table(tests)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plot


def plot(path: Path, title: str, groups: list[dict]) -> str:
    """BPB against cdm_weight per scale (w=0: the control), one line per decoder, mean ± std over
    seeds; each control's Pure-AR BPB as a horizontal reference line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"{path.name}: skipped (matplotlib is not installed; pip install -e '.[plot]')"
    scales = list(dict.fromkeys(g["scale"] for g in groups))
    fig, axes = plt.subplots(1, len(scales), figsize=(5.5 * len(scales), 4.2), squeeze=False)
    styles = {"ar": ("Pure-AR", "-", "o"), "cf_published": ("CF published (NOT a valid code length)", "--", "s"),
              "cf_valid": ("cf_valid", "-", "^")}
    for ax, scale in zip(axes[0], scales):
        mine = [g for g in groups if g["scale"] == scale]
        # The line runs from the wall-clock control (w=0) through the shared runs; a token-matched
        # control is its own reference line below.
        on_line = sorted((g for g in mine if g["match"] != "tokens"), key=lambda g: g["cdm_weight"])
        for metric, (label, ls, marker) in styles.items():
            pts = [(g["cdm_weight"], g["stats"][metric]) for g in on_line if g["stats"][metric] is not None]
            if pts:
                ax.errorbar([w for w, _ in pts], [s["mean"] for _, s in pts],
                            yerr=[s["std"] or 0.0 for _, s in pts], linestyle=ls, marker=marker, capsize=3,
                            label=label)
        for c in (g for g in mine if g["control"]):
            ref = c["stats"][reference_metric(c)]
            if ref is not None:
                tag = ", token-matched" if c["match"] == "tokens" else ""
                ax.axhline(ref["mean"], color="gray", linestyle=":" if tag else "-.", linewidth=1.2,
                           label=f"control w=0{tag}: Pure-AR {ref['mean']:.4f}")
        ax.set_title(scale)
        ax.set_xlabel("cdm_weight")
        ax.set_ylabel("bits per byte")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return f"{path.name}: written"


# ----------------------------------------------------------------------------- main


def summary_json(title: str, rows: list[dict], groups: list[dict], tests: list[dict]) -> dict:
    return {
        "title": title,
        "notes": {"cf_published": "NOT a valid code length (METHOD.md §6)",
                  "tests": "one-sample t against the control group's mean Pure-AR BPB (df = n - 1, two-sided); "
                           "Welch two-sample alongside"},
        "rows": rows,
        "groups": [{k: v for k, v in g.items() if k != "rows"} | {"cells": [r["cell"] for r in g["rows"]]}
                   for g in groups],
        "tests": tests,
    }


def main(argv=None) -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="results.json files (or the folders holding them)")
    p.add_argument("--out_dir", type=Path, default=None, help="write results.md, results.json, results.png here")
    p.add_argument("--json_out", type=Path, default=None, help="also write the summary JSON here")
    p.add_argument("--title", default="Results")
    try:
        args = p.parse_args(argv)
        rows = sort_rows([load_row(path) for path in args.results])
        cells = [str(Path(r["results"]).resolve()) for r in rows]
        if len(set(cells)) != len(cells):
            raise InputError("the same results.json is given twice")
        groups = build_groups(rows)
        tests = build_tests(groups)
    except (InputError, ArithmeticError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = markdown(args.title, rows, groups, tests)
    print(text, end="")
    summary = (json.dumps(summary_json(args.title, rows, groups, tests), indent=2) + "\n").encode("utf-8")
    # Each file is replaced atomically: a failed write (disk full) leaves its previous version.
    try:
        if args.json_out:
            atomic_write_bytes(args.json_out, summary)
        if args.out_dir:
            atomic_write_bytes(args.out_dir / "results.md", text.encode("utf-8"))
            atomic_write_bytes(args.out_dir / "results.json", summary)
            print(plot(args.out_dir / "results.png", args.title, groups))
            print(f"written: {args.out_dir / 'results.md'} {args.out_dir / 'results.json'}")
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
