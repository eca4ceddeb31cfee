"""The command line of an experiment's plan.py: `python plan.py RECIPE`, settings from the environment.

The bash entry points (run_6.sh, run_noise.sh, ...) are a few lines that call this. Bad settings
or an unusable cell: one `error:` line on stderr, exit 1, before any compute. A failing cell: the
last lines of its log and its exit status. A cell stopped by SIGTERM/SIGINT after a step
checkpoint: a `[stop ]` line and exit 143 (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, TextIO

from meadow_golf.common.cli_help import HelpFormatter
from meadow_golf.recipes.presets import RecipeError
from meadow_golf.recipes.running import CellFailed, StoppedBySignal
from meadow_golf.recipes.settings import __doc__ as SETTINGS_DOC

# A recipe: (environment, output stream) -> None; it raises RecipeError, CellFailed or StoppedBySignal.
RecipeFn = Callable[[dict, TextIO], None]
EXIT_STOPPED = 143
EXIT_INTERRUPTED = 130


def build_parser(recipes: dict[str, RecipeFn] | None = None, description: str | None = None) -> argparse.ArgumentParser:
    recipes = recipes or {}
    p = argparse.ArgumentParser(description=description or __doc__, epilog=SETTINGS_DOC, formatter_class=HelpFormatter)
    p.add_argument("recipe", choices=sorted(recipes) or None,
                   help="which recipe of this plan to run: " + ", ".join(
                       f"{name} ({(fn.__doc__ or '').strip().splitlines()[0] if fn.__doc__ else name})"
                       for name, fn in recipes.items()))
    return p


def run(recipes: dict[str, RecipeFn], name: str, env: dict | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Run one recipe; the exit status its bash entry point returns."""
    env = dict(os.environ) if env is None else env
    out, err = out or sys.stdout, err or sys.stderr
    try:
        recipes[name](env, out)
    except StoppedBySignal as e:
        out.flush()
        print(str(e), file=err)
        return EXIT_STOPPED
    except KeyboardInterrupt:  # a second Ctrl-C: the trainer quit without a new checkpoint
        out.flush()
        print("[stop ] interrupted; rerun the same command to resume from the newest step checkpoint", file=err)
        return EXIT_INTERRUPTED
    except CellFailed as e:
        out.flush()
        print(f"error: {e}", file=err)
        return e.returncode
    except RecipeError as e:
        out.flush()
        print(f"error: {e}", file=err)
        return 1
    return 0


def main(recipes: dict[str, RecipeFn], argv: list[str] | None = None, description: str | None = None) -> int:
    args = build_parser(recipes, description).parse_args(argv)
    return run(recipes, args.recipe)
