"""Print a table of training runs from their results.json files.

    python scripts/summarize.py runs/quickstart/*/results.json [--json_out table.json]

Every BPB printed here is the trainer's Pure-AR val_bpb: a valid code length (SPEC §2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COLUMNS = ("run", "params", "cdm_weight", "steps", "tokens_seen", "train_s", "pure_ar_bpb")


def load_row(path: Path) -> dict:
    try:
        res = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable results.json ({e})") from None
    missing = [k for k in ("final_val_bpb", "steps", "tokens_seen", "train_seconds", "config") if k not in res]
    if missing:
        raise ValueError(f"{path}: not a train_cdm results.json (missing {', '.join(missing)})")
    return {
        "run": path.parent.name,
        "params": res.get("params"),
        "cdm_weight": res["config"]["train"].get("cdm_weight"),
        "steps": res["steps"],
        "tokens_seen": res["tokens_seen"],
        "train_s": round(res["train_seconds"], 1),
        "pure_ar_bpb": round(res["final_val_bpb"], 4),
    }


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--json_out", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        rows = [load_row(path) for path in args.results]
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(markdown_table(rows))
    print("pure_ar_bpb: Pure-AR validation bits per byte (a valid code length)")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
