"""The entry scripts' one shared step: import the module that does the work and run its main(),
or, when a package it needs is missing (the project not installed, or installed without the
extra it needs), say in one `error:` line what to install instead of a ModuleNotFoundError
traceback. Standard library only, so that it runs where nothing else is installed.
"""

from __future__ import annotations

import importlib
import sys

# The extras of pyproject.toml that make each framework importable.
INSTALL = {"torch": "pip install -e '.[torch]'", "mlx": "pip install -e '.[mlx]'",
           # the LoRA retrofit needs both extras (scripts/meadow_golf/retrofit/)
           "retrofit": "pip install -e '.[torch]' && pip install -e '.[retrofit]'"}


def install_hint(extras: tuple[str, ...]) -> str:
    return " (or ".join(INSTALL[e] for e in extras) + ")" * (len(extras) - 1)


def run(module: str, extras: tuple[str, ...] = ("torch",)) -> int:
    """main() of `module`; exit status 1 with one error line when importing it fails for a missing package."""
    try:
        main = importlib.import_module(module).main
    except ModuleNotFoundError as e:
        print(f"error: cannot import {e.name} (needed by {module}): install the project from the repository root "
              f"with {install_hint(extras)}", file=sys.stderr)
        return 1
    return main()
