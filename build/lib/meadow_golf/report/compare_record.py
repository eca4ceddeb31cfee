"""Print a rerun's numbers beside a committed record's, from their JSON.

    python scripts/compare_record.py RERUN RECORD

RERUN and RECORD are each a JSON file or the folder that holds it, of one of the kinds the
writeups' commands produce:
- results.json of scripts/summarize.py (the matched-ablation recipes): per cell, the trainer's
  val_bpb and each decoder's BPB (cf_published is NOT a valid code length, METHOD.md §6);
- ab.json of the retrodiction A/B (run_ab.sh): each arm's Pure-AR val_bpb and B - A;
- entropy_floor.json (entropy_floor.py): each run's BPB per decoder, and the floor.
One line per number found in either file: `rerun:` then `record:` then their difference. A number
only one side has is shown with `-` on the other (a smoke rerun has fewer cells than the record).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from meadow_golf.common.cli_help import HelpFormatter

# In a folder, the first of these that exists is the JSON to compare.
JSON_NAMES = ("results.json", "ab.json", "entropy_floor.json")


class CompareError(Exception):
    pass


def find_json(path: Path) -> Path:
    if path.is_dir():
        for name in JSON_NAMES:
            if (path / name).is_file():
                return path / name
        raise CompareError(f"{path}: no {', '.join(JSON_NAMES)} in this folder")
    if not path.is_file():
        raise CompareError(f"{path}: no such file or folder")
    return path


def numbers(doc: dict) -> dict[str, float]:
    """The comparable numbers of one JSON document, by a label that is the same in rerun and record."""
    out: dict[str, float] = {}
    if "rows" in doc:  # scripts/summarize.py
        for row in doc["rows"]:
            for key, value in row.items():
                if isinstance(value, float) and (key == "val_bpb" or key == "ar" or key.startswith("cf_")):
                    out[f"{row['cell']} {key}"] = value
    elif "delta_bpb_B_minus_A" in doc:  # run_ab.sh
        for arm in ("A", "B"):
            out[f"arm {arm} (retro_alpha {doc[arm]['retro_alpha']}) pure_ar_val_bpb"] = doc[arm]["pure_ar_val_bpb"]
        out["delta_bpb(B-A)"] = doc["delta_bpb_B_minus_A"]
    elif "floor_bits_per_byte" in doc:  # entropy_floor.py
        out["floor bits/byte"] = doc["floor_bits_per_byte"]
        for run, res in doc["runs"].items():
            for dec, r in res["decoders"].items():
                if not dec.startswith("_"):
                    out[f"{run} {dec} bpb"] = r["bpb"]
    else:
        raise CompareError("not a summarize.py results.json, an ab.json or an entropy_floor.json")
    return out


def load_numbers(path: Path) -> tuple[Path, dict[str, float]]:
    path = find_json(path)
    try:
        doc = json.loads(path.read_text())
        return path, numbers(doc)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CompareError(f"{path}: unreadable ({type(e).__name__}: {e})") from e
    except CompareError as e:
        raise CompareError(f"{path}: {e}") from e


def comparison_lines(rerun: Path, record: Path) -> list[str]:
    rerun_path, new = load_numbers(rerun)
    record_path, old = load_numbers(record)
    lines = [f"[compare] rerun: {rerun_path}", f"[compare] record: {record_path} (committed)"]
    width = max(len(k) for k in [*new, *old])
    for key in [*new, *(k for k in old if k not in new)]:
        a, b = new.get(key), old.get(key)
        diff = f"{a - b:+.4f}" if a is not None and b is not None else "-"
        fmt = lambda v: f"{v:.4f}" if v is not None else "-"  # noqa: E731
        lines.append(f"[compare] {key:<{width}}  rerun:{fmt(a):>8}  record:{fmt(b):>8}  diff:{diff:>8}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compare_record.py", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("rerun", type=Path, help="the rerun's JSON (or its folder)")
    p.add_argument("record", type=Path, help="the committed record's JSON (or its folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        lines = comparison_lines(args.rerun, args.record)
    except (CompareError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
