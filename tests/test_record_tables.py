"""Every table of the CPU record quoted in a README is regenerated from the committed JSON.

A README marks each quoted table with `<!-- generated: PATH -->` ... `<!-- /generated -->`,
PATH being a committed summary (results.md) relative to the matched-ablation folder. This test
reruns scripts/summarize.py on the cells that summary lists (their committed results.json,
eval_cf.json and per-window .npz files), checks that the result equals the committed results.md,
and that every line of the quoted block is a line of it: a hand-edited number cannot drift.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from meadow_golf import summarize

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "2026-04-09_matched_ablation"
READMES = (REPO / "README.md", EXPERIMENT / "README.md")
BLOCK = re.compile(r"<!-- generated: (?P<path>\S+) -->\n(?P<body>.*?)<!-- /generated -->", re.S)


def quoted_blocks() -> list[tuple[Path, str, str]]:
    blocks = []
    for readme in READMES:
        for m in BLOCK.finditer(readme.read_text()):
            blocks.append((readme, m["path"], m["body"]))
    return blocks


def regenerate(summary_md: Path, out_dir: Path) -> str:
    """Run summarize.py as the recipe did: the same title, the same cells, the default bootstrap."""
    summary = json.loads(summary_md.with_name("results.json").read_text())
    title = summary_md.read_text().splitlines()[0].removeprefix("# ")
    cells = [EXPERIMENT / "cpu_record" / "cells" / row["cell"] for row in summary["rows"]]
    assert summarize.main(["--out_dir", str(out_dir), "--title", title, *map(str, cells)]) == 0
    return (out_dir / "results.md").read_text()


def test_the_readmes_quote_the_record():
    paths = {path for _, path, _ in quoted_blocks()}
    assert {"cpu_record/ablation6/results.md", "cpu_record/seeds/results.md"} <= paths


@pytest.mark.parametrize("summary", ["cpu_record/ablation6/results.md", "cpu_record/seeds/results.md"])
def test_record_tables_regenerate_from_the_committed_json(summary, tmp_path):
    committed = EXPERIMENT / summary
    regenerated = regenerate(committed, tmp_path)
    assert regenerated == committed.read_text()
    lines = set(regenerated.splitlines())
    for readme, path, body in quoted_blocks():
        if path != summary:
            continue
        quoted = [line for line in body.splitlines() if line.strip()]
        assert quoted, f"{readme}: empty generated block for {path}"
        missing = [line for line in quoted if line not in lines]
        assert not missing, f"{readme}: lines not in the regenerated {path}: {missing[:3]}"
