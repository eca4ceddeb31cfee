"""Every command-line entry point's --help describes every flag and shows its default (issue 13 item 11)."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "2026-04-09_matched_ablation"
PACKAGE = ROOT / "scripts" / "meadow_golf"

# meadow_golf module name -> the function that builds its parser (every CLI of the project); a module
# with several CLIs names a tuple of builders (the first is build_parser, the others build_<name>_parser).
PARSERS = {
    "train.flags": "build_parser",  # train_cdm.py and train_cdm_mlx.py
    "eval.eval_cf": "build_parser",
    "eval.leakage": "build_parser",
    "eval.generate": "build_parser",
    "tools.benchmark": "build_parser",
    "tools.profile_step": "build_parser",
    "tools.entropy_floor": "build_parser",
    "original.audit_table": "build_parser",
    "recipes.cli": "build_parser",  # every experiment's plan.py
    "data.prepare_data": "build_parser",
    "report.summarize": "build_parser",
    "original.fetch": "build_parser",
    "original.replay_fixture": "build_parser",
    "report.compare_record": "build_parser",
    "common.python_deps": "build_parser",
    "retrofit.train": "build_parser",
    "retrofit.evaluate": ("build_parser", "build_infill_parser"),  # eval_humaneval.py, eval_infill.py
    "retrofit.eval_bits": "build_parser",
    "retrofit.gpt_record": "build_parser",
    "retrofit.recipe": "build_parser",
    "retrofit.report": "build_parser",
}
BUILDER = re.compile(r"^def (build_(?:\w+_)?parser)\(", re.MULTILINE)


def builders(fns) -> tuple[str, ...]:
    return (fns,) if isinstance(fns, str) else tuple(fns)


def parsers_of(parser: argparse.ArgumentParser, name: str):
    """The parser and each of its subcommands' parsers."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers_of(sub, f"{name} {sub_name}")


def all_parsers():
    for module, fns in PARSERS.items():
        for fn in builders(fns):
            name = module if fn == "build_parser" else f"{module}:{fn}"
            yield from parsers_of(getattr(importlib.import_module(f"meadow_golf.{module}"), fn)(), name)


def test_every_parser_of_the_package_is_checked():
    """Every parser builder of scripts/meadow_golf/ (a module-level build_parser or build_<name>_parser)
    is in PARSERS, so a new CLI is checked too. train_cdm_mlx's parser is trainer_core's plus the MLX
    flags (and importing it needs mlx)."""
    found = {(".".join(p.relative_to(PACKAGE).with_suffix("").parts), fn) for p in PACKAGE.rglob("*.py")
             for fn in BUILDER.findall(p.read_text())}
    listed = {(module, fn) for module, fns in PARSERS.items() for fn in builders(fns)}
    assert {(m, fn) for m, fn in found if m != "train.train_cdm_mlx"} == listed


def test_every_flag_has_help_and_shows_its_default():
    problems = []
    for name, parser in all_parsers():
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                problems.append(f"{name} {flag}: no help")
                continue
            if action.default not in (None, argparse.SUPPRESS) and action.option_strings:
                # The flag's own entry of the help, as the parser's formatter writes it.
                entry = " ".join(parser._get_formatter()._format_action(action).split())
                if "(default:" not in entry:
                    problems.append(f"{name} {flag}: default {action.default!r} not shown")
    assert not problems, "\n".join(problems)


def test_one_formatter_for_all():
    from meadow_golf.common.cli_help import HelpFormatter

    for name, parser in all_parsers():
        assert parser.formatter_class is HelpFormatter, name


@pytest.mark.parametrize("script", [EXP / "eval_cf.py", EXP / "train_cdm.py", ROOT / "scripts" / "summarize.py"])
def test_help_runs(script):
    """The thin entry scripts at the documented paths run their module's main()."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "(default:" in res.stdout and f"usage: {script.name}" in res.stdout  # prog: the script typed
