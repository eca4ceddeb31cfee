"""Check that the Python modules an entry point needs are importable, before it does any work.

    python scripts/python_deps.py torch numpy sentencepiece [--extra mlx] [--python_label PYTHON=python]

Exit 0 when all are found; otherwise exit 1 with one `error:` line naming the missing modules and
the command that installs them. Standard library only, and nothing is imported: a module is
looked up (importlib.util.find_spec), so checking torch costs milliseconds, not its import time.
The recipes call it before their first cell; scripts/prepare_data.py uses missing_line().
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from meadow_golf.common.cli_help import HelpFormatter

# What a pod or laptop user runs once, from the repository root (scripts/venv.sh does the same).
SETUP = "python3 -m venv .venv && . .venv/bin/activate && pip install -e {spec}"
TORCH_SPEC, MLX_SPEC = "'.[torch]'", "pip install -e '.[mlx]'"


def missing(modules: list[str]) -> list[str]:
    """The modules of `modules` that cannot be found (a None in sys.modules counts as missing)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a dotted name whose parent is missing, or a broken entry
            found = False
        if not found:
            out.append(name)
    return out


def missing_line(names: list[str], extra: str | None = None, python_label: str | None = None) -> str:
    """One error line: which modules are missing for which interpreter, and how to get them."""
    who = python_label or sys.executable
    if extra:
        how = SETUP.format(spec=f"'.[{extra}]'")
    else:
        # The base install has no trainer: torch (or, on an Apple-silicon Mac, mlx) is an extra,
        # and a hint of `pip install -e .` left the next step without it.
        how = f"{SETUP.format(spec=TORCH_SPEC)} (on an Apple-silicon Mac: {MLX_SPEC})"
    return (f"error: {who} cannot import {', '.join(names)}; set up the environment from the repository root "
            f"with: {how} (or activate the .venv that scripts/venv.sh made)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python_deps.py", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("modules", nargs="+", help="module names to look up (e.g. torch numpy sentencepiece)")
    p.add_argument("--extra", default=None, help="the project extra that installs them (e.g. mlx); none: the base install")
    p.add_argument("--python_label", default=None,
                   help="how to name the interpreter in the error line (e.g. PYTHON=python); none: its path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = missing(args.modules)
    if names:
        print(missing_line(names, args.extra, args.python_label), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
