"""Summarize trained (and evaluated) runs: results.json files -> tables, seed statistics, plots.

    python scripts/summarize.py runs/quickstart/cells/*/results.json          # print the tables
    python scripts/summarize.py --out_dir OUT CELL/results.json ...           # + OUT/results.{md,json,png}

Each argument is a trainer's results.json (or the folder holding it); what is read next to it is
report/rows.py's docstring (eval_cf.json, eval_heldout.json, cell.json and their per-window files).

Columns: the original table's (run, params, objective, Pure-AR BPB, CF BPB) plus cf_valid BPB,
the trainer's final val_bpb, steps and tokens seen. Pure-AR BPB, CF BPB and cf_valid BPB are
eval_cf.py's decoders ar, cf_published and cf_valid on the same windows. CF BPB is the decoder
as first published and is NOT a valid code length (METHOD.md §6); every header showing it says so.

Runs with the same configuration and different seeds form a group: mean ± sample standard
deviation (n - 1). Each group of shared runs (cdm_weight > 0) is compared with each control group
(cdm_weight 0) of the same scale (report/compare.py): paired over the seeds both have (diff = the
mean of the per-seed differences, paired t with k - 1 df, and its interval widened by the window
sampling error every seed shares: report/stats.py), unpaired (Welch, labelled so) only where fewer
than two seeds pair. Per cell: bootstrap CIs over windows of every decoder, paired window CIs of
same-seed differences, the Pure-AR tax on the trainer's stream beside the tax on the windows, the
best valid decoder, the bidirectional codes with the ELBO; across sizes, the tax against
log10(params) with an OLS line through the seeds. Every bootstrap draws from numpy's
default_rng(--boot_seed) with --n_boot resamples (reproducible).

The plots (results.png, results_scale.png) need matplotlib, a regular dependency of the project;
in an environment without it they are skipped with a message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from meadow_golf.common.cli_help import HelpFormatter
from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.report import compare, plots, stats, tables
from meadow_golf.report.rows import InputError, build_groups, load_row, read_floor, sort_rows

DEFAULT_N_BOOT = compare.DEFAULT_N_BOOT
DEFAULT_BOOT_SEED = compare.DEFAULT_BOOT_SEED


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one `error:` line instead of the usage block."""

    def error(self, message):
        raise InputError(message)


def build(title: str, rows: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED,
          floor: dict | None = None) -> dict:
    """Every part of a summary, computed once: rows, groups, comparisons, CIs, the fits."""
    rows = sort_rows(rows)
    groups = build_groups(rows)
    cis = compare.cell_cis(rows, n_boot, boot_seed)
    points = compare.scale_points(groups, n_boot, boot_seed)
    return {"title": title, "n_boot": n_boot, "boot_seed": boot_seed, "rows": rows, "groups": groups,
            "tests": compare.build_tests(groups, n_boot, boot_seed), "cis": cis,
            "tax_cells": compare.tax_cells(rows, n_boot, boot_seed),
            "best": compare.best_valid(rows, n_boot, boot_seed), "floor": floor,
            "bidir": compare.bidir_entries(rows, cis, floor, n_boot, boot_seed), "points": points,
            "fits": compare.scale_fits(points) if len({p["scale"] for p in points}) > 1 else {}}


def public_row(row: dict) -> dict:
    """A row without its per-window arrays (they stay in the per-window files)."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def summary_json(s: dict) -> dict:
    n_boot, boot_seed = s["n_boot"], s["boot_seed"]
    return {
        "title": s["title"],
        "notes": {"cf_published": "NOT a valid code length (METHOD.md §6)",
                  "window_cis": tables.footnote_cis(n_boot, boot_seed, s["cis"]),
                  "tests": tables.footnote_tests(n_boot, boot_seed),
                  "window_pairs": tables.footnote_pairs(n_boot, boot_seed),
                  "tax_cells": tables.footnote_tax_cells(n_boot, boot_seed),
                  "best_valid": tables.footnote_best_valid(n_boot, boot_seed),
                  "scale": tables.footnote_scale(n_boot, boot_seed)},
        "bootstrap": {"n_boot": n_boot, "seed": boot_seed, "level": stats.CI_LEVEL, "rng": "numpy default_rng(seed)"},
        "rows": [public_row(r) for r in s["rows"]],
        "groups": [{k: v for k, v in g.items() if k != "rows"} | {"cells": [r["cell"] for r in g["rows"]]}
                   for g in s["groups"]],
        "window_cis": s["cis"],
        "tests": s["tests"],
        "tax_cells": s["tax_cells"],
        "best_valid": s["best"],
        "bidirectional": s["bidir"],
        "floor": s["floor"],
        "scale_points": s["points"],
        "scale_fits": s["fits"],
    }


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="results.json files (or the folders holding them)")
    p.add_argument("--out_dir", type=Path, default=None, help="write results.md, results.json, results.png here")
    p.add_argument("--json_out", type=Path, default=None, help="also write the summary JSON here")
    p.add_argument("--title", default="Results", help="heading of results.md and of the plot")
    p.add_argument("--n_boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples (every CI)")
    p.add_argument("--boot_seed", type=int, default=DEFAULT_BOOT_SEED, help="seed of every bootstrap's numpy RNG")
    p.add_argument("--floor_meta", type=Path, default=None,
                   help="a prepared data folder's meta.json: with the exact entropy_bits_per_byte of a synthetic "
                        "source, every valid code and the ELBO is set against that floor (a natural corpus has none)")
    return p


def main(argv=None) -> int:
    p = build_parser()
    try:
        args = p.parse_args(argv)
        if args.n_boot < 100:
            raise InputError(f"--n_boot must be >= 100 (a percentile CI needs resamples), got {args.n_boot}")
        if args.boot_seed < 0:
            raise InputError(f"--boot_seed must be >= 0, got {args.boot_seed}")
        rows = [load_row(path) for path in args.results]
        cells = [str(Path(r["results"]).resolve()) for r in rows]
        if len(set(cells)) != len(cells):
            raise InputError("the same results.json is given twice")
        summary = build(args.title, rows, args.n_boot, args.boot_seed, read_floor(args.floor_meta))
    except (InputError, ArithmeticError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = tables.markdown(summary)
    print(text, end="")
    blob = (json.dumps(summary_json(summary), indent=2) + "\n").encode("utf-8")
    # Each file is replaced atomically: a failed write (disk full) leaves its previous version.
    try:
        if args.json_out:
            atomic_write_bytes(args.json_out, blob)
        if args.out_dir:
            atomic_write_bytes(args.out_dir / "results.md", text.encode("utf-8"))
            atomic_write_bytes(args.out_dir / "results.json", blob)
            print(plots.plot(args.out_dir / "results.png", args.title, summary["groups"]))
            if summary["fits"]:
                print(plots.plot_scale(args.out_dir / "results_scale.png", args.title, summary["points"],
                                       summary["fits"]))
            print(f"written: {args.out_dir / 'results.md'} {args.out_dir / 'results.json'}")
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
