"""Every table of the CPU record quoted in a README is regenerated from the committed JSON.

A README marks each quoted table with `<!-- generated: PATH -->` ... `<!-- /generated -->`,
PATH being a committed summary (results.md) relative to that README's experiment folder (the top
README quotes the matched ablation's). This test reruns scripts/summarize.py on the cells that
summary lists (their committed results.json, eval_cf.json and per-window .npz files, in the
record's cells/ folder beside the summary's folder), with the entropy floor the summary recorded,
checks that the result equals the committed results.md, and that every line of the quoted block
is a line of it: a hand-edited number cannot drift.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from meadow_golf.report import summarize

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "2026-04-09_matched_ablation"
NOISE = REPO / "experiments" / "2026-12-01_absorbing_noise"
SHARE = REPO / "experiments" / "2026-12-01_share_ratio_and_scale"
# README -> the folder its PATHs are relative to.
READMES = {REPO / "README.md": EXPERIMENT, EXPERIMENT / "README.md": EXPERIMENT, NOISE / "README.md": NOISE,
           SHARE / "README.md": SHARE}
BLOCK = re.compile(r"<!-- generated: (?P<path>\S+) -->\n(?P<body>.*?)<!-- /generated -->", re.S)
SUMMARIES = [
    (EXPERIMENT, "cpu_record/ablation6/results.md"), (EXPERIMENT, "cpu_record/seeds/results.md"),
    (NOISE, "cpu_record/shakespeare/noise/results.md"), (NOISE, "cpu_record/synthetic/noise/results.md"),
    (SHARE, "cpu_record/wgrid/results.md"), (SHARE, "cpu_record/scale/results.md"),
]


def quoted_blocks() -> list[tuple[Path, Path, str]]:
    """(README, the quoted summary's path, the block's text) for every generated block."""
    blocks = []
    for readme, base in READMES.items():
        for m in BLOCK.finditer(readme.read_text()):
            blocks.append((readme, base / m["path"], m["body"]))
    return blocks


def regenerate(summary_md: Path, out_dir: Path) -> str:
    """Run summarize.py as the recipe did: the same title, the same cells, the same floor, the default bootstrap."""
    summary = json.loads(summary_md.with_name("results.json").read_text())
    title = summary_md.read_text().splitlines()[0].removeprefix("# ")
    cells = [summary_md.parent.parent / "cells" / row["cell"] for row in summary["rows"]]
    floor = []
    if summary.get("floor"):
        meta = out_dir / "floor_meta.json"
        out_dir.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"entropy_bits_per_byte": summary["floor"]["bits_per_byte"],
                                    "val_entropy_bits_per_byte_sample": summary["floor"]["val_sample_bits_per_byte"]}))
        floor = ["--floor_meta", str(meta)]
    assert summarize.main(["--out_dir", str(out_dir), "--title", title, *floor, *map(str, cells)]) == 0
    return (out_dir / "results.md").read_text()


def test_the_readmes_quote_the_record():
    paths = {path for _, path, _ in quoted_blocks()}
    assert {base / rel for base, rel in SUMMARIES} <= paths


@pytest.mark.parametrize("base, summary", SUMMARIES, ids=[f"{b.name}/{s}" for b, s in SUMMARIES])
def test_record_tables_regenerate_from_the_committed_json(base, summary, tmp_path):
    committed = base / summary
    regenerated = regenerate(committed, tmp_path / "out")
    assert regenerated == committed.read_text()
    lines = set(regenerated.splitlines())
    for readme, path, body in quoted_blocks():
        if path != committed:
            continue
        quoted = [line for line in body.splitlines() if line.strip()]
        assert quoted, f"{readme}: empty generated block for {path}"
        missing = [line for line in quoted if line not in lines]
        assert not missing, f"{readme}: lines not in the regenerated {path}: {missing[:3]}"
