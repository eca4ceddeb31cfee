"""Every committed summary of the CPU record regenerates byte for byte, and every table a README
quotes from one renders as that table.

A README marks each quoted table with `<!-- generated: PATH -->` ... `<!-- /generated -->`, PATH
being a committed summary (results.md) relative to that README's experiment folder (the top README
quotes the matched ablation's). This test:
- reruns scripts/summarize.py as the recipes ran it (from the experiment folder, on the cells that
  summary lists: their committed results.json, eval JSONs and per-window .npz files, with the
  entropy floor the summary recorded) and checks that results.md equals the committed one byte for
  byte, and results.json too (its floor's `source`, a path to a data folder outside git, aside);
- parses each README with a real Markdown parser (markdown-it-py, the dev extra) and checks that
  each generated block renders as exactly ONE table whose header is the header of one table of the
  regenerated results.md and whose rows are rows of that same table, as many as the block quotes.
  A block without its header or separator row (which renders as a paragraph of pipes) fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

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


def quoted_blocks() -> list[tuple[Path, Path, str, int]]:
    """(README, the quoted summary's path, the block's text, its first line number) per generated block."""
    blocks = []
    for readme, base in READMES.items():
        text = readme.read_text()
        for m in BLOCK.finditer(text):
            first = text.count("\n", 0, m.start("body"))
            blocks.append((readme, base / m["path"], m["body"], first))
    return blocks


def regenerate(base: Path, summary_md: Path, out_dir: Path, monkeypatch) -> tuple[str, dict]:
    """Run summarize.py as the recipe did: from the experiment folder, the same title, cells (as the
    summary names them) and floor, the default bootstrap."""
    summary = json.loads(summary_md.with_name("results.json").read_text())
    title = summary_md.read_text().splitlines()[0].removeprefix("# ")
    floor = []
    if summary.get("floor"):
        meta = out_dir / "floor_meta.json"
        out_dir.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"entropy_bits_per_byte": summary["floor"]["bits_per_byte"],
                                    "val_entropy_bits_per_byte_sample": summary["floor"]["val_sample_bits_per_byte"]}))
        floor = ["--floor_meta", str(meta)]
    monkeypatch.chdir(base)
    cells = [row["results"] for row in summary["rows"]]
    assert summarize.main(["--out_dir", str(out_dir), "--title", title, *floor, *cells]) == 0
    return (out_dir / "results.md").read_text(), json.loads((out_dir / "results.json").read_text())


def md_tables(text: str) -> list[list[str]]:
    """The tables of a results.md as their lines (header, separator, rows)."""
    out, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            out.append(current)
            current = []
    return out


def rendered_tables(text: str) -> list[tuple[int, int, int]]:
    """(first line, end line, body rows) of every table markdown-it renders from a whole README."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables, open_table, rows, in_body = [], None, 0, False
    for tok in tokens:
        if tok.type == "table_open":
            open_table, rows = tok.map, 0
        elif tok.type == "tbody_open":
            in_body = True
        elif tok.type == "tbody_close":
            in_body = False
        elif tok.type == "tr_open" and in_body:
            rows += 1
        elif tok.type == "table_close":
            tables.append((open_table[0], open_table[1], rows))
    return tables


def test_the_readmes_quote_the_record():
    paths = {path for _, path, _, _ in quoted_blocks()}
    assert {base / rel for base, rel in SUMMARIES} <= paths


@pytest.mark.parametrize("base, summary", SUMMARIES, ids=[f"{b.name}/{s}" for b, s in SUMMARIES])
def test_record_tables_regenerate_from_the_committed_json(base, summary, tmp_path, monkeypatch):
    committed = base / summary
    regenerated, regenerated_json = regenerate(base, committed, tmp_path / "out", monkeypatch)
    assert regenerated == committed.read_text()
    committed_json = json.loads(committed.with_name("results.json").read_text())
    for doc in (committed_json, regenerated_json):
        if doc.get("floor"):
            doc["floor"]["source"] = "(the data folder's meta.json)"
    assert regenerated_json == committed_json
    tables = md_tables(regenerated)
    for readme, path, body, first in quoted_blocks():
        if path != committed:
            continue
        lines = [line for line in body.splitlines() if line.strip()]
        assert len(lines) >= 3, f"{readme}: a generated block needs a header, a separator and a row ({path})"
        owner = [t for t in tables if t[0] == lines[0]]
        assert owner, f"{readme}: the block's first line is not the header of a table of {path}: {lines[0][:80]}"
        assert lines[1] == owner[0][1], f"{readme}: the block's second line must be its table's separator"
        missing = [line for line in lines[2:] if line not in owner[0][2:]]
        assert not missing, f"{readme}: rows not in that table of the regenerated {path}: {missing[:2]}"


@pytest.mark.parametrize("readme", list(READMES), ids=[str(r.relative_to(REPO)) for r in READMES])
def test_every_generated_block_renders_as_one_table(readme):
    text = readme.read_text()
    rendered = rendered_tables(text)
    blocks = [b for b in quoted_blocks() if b[0] == readme]
    assert blocks, f"{readme}: no generated block"
    for _, path, body, first in blocks:
        n_lines = len(body.splitlines())
        inside = [t for t in rendered if first <= t[0] and t[1] <= first + n_lines]
        rows = len([line for line in body.splitlines() if line.strip()]) - 2
        assert len(inside) == 1, f"{readme}: the block quoting {path} renders as {len(inside)} tables, not one"
        assert inside[0][2] == rows, f"{readme}: the table quoting {path} renders {inside[0][2]} rows, not {rows}"


def test_the_render_check_can_fail():
    """A block without its separator row renders as a paragraph: no table at all."""
    broken = "<!-- generated: x -->\n| a | b |\n| 1 | 2 |\n<!-- /generated -->\n"
    assert rendered_tables(broken) == []
    fixed = "<!-- generated: x -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- /generated -->\n"
    assert [rows for _, _, rows in rendered_tables(fixed)] == [1]
