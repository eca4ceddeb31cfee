"""The retrofit's gating table from a recipe run's JSON files: RUN/gating.md and RUN/gating.json.

    report_retrofit.py --run_dir RUN

Gate (the seed's first milestone): causal HumanEval pass@1 of the retrofit within 2 points of the
base (retrofit - base >= -2 points, on the point estimate; the paired bootstrap CI over problems
is shown beside it), and coherent line-level infill under the CF decoder (its pass@1 beside the
causal decoders'; "coherent" is judged by a person reading the items file, the table shows the
numbers). Every CI is a percentile bootstrap (summarize.window_bootstrap, 2,000 draws, seed 0):
over problems / tasks for pass rates, over windows or tasks for bits per byte.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.common.cli_help import HelpFormatter

GATE_POINTS = 2.0


def items(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.with_suffix(".items.jsonl").read_text().splitlines() if line]


def paired_pass_diff(a: list[dict], b: list[dict]) -> dict:
    """Bootstrap CI of pass-rate(a) - pass-rate(b) over the same tasks, paired. Uses
    window_bootstrap with per-task 'nll' = passed * ln 2 and 'bytes' = 1, whose statistic
    sum(nll) / (ln 2 * sum(bytes)) is then exactly the pass rate."""
    from meadow_golf.report.summarize import window_bootstrap

    kb = {it["task_id"]: it["passed"] for it in b}
    ids = [it["task_id"] for it in a if it["task_id"] in kb]
    pa = np.array([float(next(x["passed"] for x in a if x["task_id"] == t)) for t in ids]) * math.log(2)
    pb = np.array([float(kb[t]) for t in ids]) * math.log(2)
    ones = np.ones(len(ids))
    return window_bootstrap([(pa, ones), (pb, ones)], 2000, 0)


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def ci(r: dict, scale: float = 100.0, fmt: str = ".1f") -> str:
    return f"{scale * r['estimate']:{fmt}} [{scale * r['lo']:{fmt}}, {scale * r['hi']:{fmt}}]"


def build(run_dir: Path) -> tuple[dict, list[str]]:
    read = lambda name: json.loads((run_dir / name).read_text())  # noqa: E731
    hb, hr = read("humaneval_base.json"), read("humaneval_retrofit.json")
    diff = paired_pass_diff(items(run_dir / "humaneval_retrofit.json"), items(run_dir / "humaneval_base.json"))
    gate_he = 100 * diff["estimate"] >= -GATE_POINTS
    lines = ["# LoRA retrofit: gating table", "",
             f"Base: `{hr['base_model']}`; retrofit: mode {hr['retrofit']['mode']}, DeltaNet "
             f"{hr['retrofit']['deltanet']}, convention {hr['retrofit']['convention']}, w {hr['retrofit']['w']}, "
             f"{hr['retrofit']['steps']} steps.", "",
             "## Causal HumanEval pass@1 (greedy; higher is better)", "",
             "| model | pass@1 % | Wilson 95% | problems |", "|---|---|---|---|"]
    for name, r in (("base", hb), ("retrofit (causal mode)", hr)):
        w = r["pass@1"]
        lines.append(f"| {name} | {pct(w['estimate'])} | [{pct(w['lo'])}, {pct(w['hi'])}] | {w['n']} |")
    lines += ["", f"Retrofit - base: {ci(diff)} points (paired bootstrap over problems). Gate (>= -{GATE_POINTS:g} "
              f"points): **{'PASS' if gate_he else 'FAIL'}**.", "",
              "## Single-line infilling pass@1 (1,033 rebuilt tasks; higher is better)", "",
              "| model | decoder | pass@1 % | Wilson 95% | exact line | tasks |", "|---|---|---|---|---|---|"]
    ib, ir = read("infill_base.json"), read("infill_retrofit.json")
    for name, r in (("base", ib), ("retrofit", ir)):
        for d, v in r["decoders"].items():
            w = v["pass@1"]
            label = " (UPPER BOUND: oracle length)" if d == "oracle_len" else ""
            lines.append(f"| {name} | {d}{label} | {pct(w['estimate'])} | [{pct(w['lo'])}, {pct(w['hi'])}] | "
                         f"{v['exact_line']} | {w['n']} |")
        for d, why in r.get("skipped", {}).items():
            lines.append(f"| {name} | {d} | skipped: {why} | | | |")
    cf_vs = {}
    ri, bi = items(run_dir / "infill_retrofit.json"), items(run_dir / "infill_base.json")
    for ref in ("prefix", "fim"):
        b_rows = [it for it in bi if it["decoder"] == ref]
        c_rows = [it for it in ri if it["decoder"] == "cf"]
        if b_rows and c_rows:
            cf_vs[ref] = paired_pass_diff(c_rows, b_rows)
            lines.append(f"\nCF (retrofit) - {ref} (base): {ci(cf_vs[ref])} points (paired over tasks).")
    bits = read("bits.json")
    lines += ["", "## Bits per byte on held-out code (Python stdlib sources; lower is better)", "",
              "| code | bpb [95% CI] | minus base ar [95% CI] |", "|---|---|---|"]
    for k, v in bits["bpb"].items():
        d = bits["bpb_paired"].get(f"{k} - base ar")
        lines.append(f"| {k} | {ci(v, 1.0, '.4f')} | {ci(d, 1.0, '+.4f') if d else '-'} |")
    ic = bits["infill_code_length"]
    lines += ["", "## Infill code length of the missing line (bits per byte of the line; lower is better)", "",
              "| code | bits/byte [95% CI] |", "|---|---|"]
    for k, v in ic["bits_per_byte"].items():
        lines.append(f"| {k} | {ci(v, 1.0, '+.4f' if ' - ' in k else '.4f')} |")
    lines += ["", f"Each line code is given the line's token count; coding the count adds "
              f"{ic['length_code_bits_mean']:.2f} bits per line on average to every row alike.", ""]
    summary = {"humaneval": {"base": hb["pass@1"], "retrofit": hr["pass@1"], "retrofit_minus_base": diff,
                             "gate_points": GATE_POINTS, "gate_passed": gate_he},
               "infill": {"base": ib["decoders"], "retrofit": ir["decoders"], "cf_minus": cf_vs},
               "bits": {"bpb": bits["bpb"], "paired": bits["bpb_paired"], "infill_code_length": ic}}
    return summary, lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--run_dir", required=True, help="the recipe's --out_dir (its stages' JSON files are read)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run_dir)
    need = ["humaneval_base.json", "humaneval_retrofit.json", "infill_base.json", "infill_retrofit.json", "bits.json"]
    missing = [n for n in need if not (run_dir / n).is_file()]
    if missing:
        print(f"error: {run_dir}: missing {', '.join(missing)} (run the recipe's stages first)", file=sys.stderr)
        return 1
    summary, lines = build(run_dir)
    atomic_write_bytes(run_dir / "gating.json", (json.dumps(summary, indent=2) + "\n").encode())
    atomic_write_bytes(run_dir / "gating.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
