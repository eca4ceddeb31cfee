"""Labels that say what was done: a cell trained with no clock (BUDGET_SECS=0) is recorded and
printed as MATCH=steps (meadow_golf.recipes), and a cell claimed under the old label `wallclock` is
still accepted (and relabelled) when its recipe is the same."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from meadow_golf.recipes import cells as cell_status
from meadow_golf.recipes.presets import RecipeError
from meadow_golf.recipes.settings import resolve
from meadow_golf.recipes.steps import Recipe
from recipe_run import plan_module

REPO = Path(__file__).resolve().parents[1]
EXP = REPO / "experiments" / "2026-04-09_matched_ablation"


class Resolved:
    def __init__(self, returncode: int, stdout: str = "", stderr: str = ""):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def recipe(tmp_path, **env) -> Resolved:
    """run_6's settings, plan and printed table, without training: the settings it resolves."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "meta.json").write_text("{}")
    full_env = {"DATA_DIR": str(data), "CKPT_DIR": str(tmp_path / "cells"), **env}
    out = io.StringIO()
    try:
        settings = resolve(full_env, EXP, "ablation6")
        Recipe(settings, plan_module("matched_ablation").plan_ablation6(settings), out).print_table("T")
    except RecipeError as e:
        return Resolved(1, out.getvalue(), f"error: {e}\n")
    return Resolved(0, out.getvalue() + f"MATCH_IS={settings.match}\n")


@pytest.mark.parametrize("env, match", [
    ({"PRESET": "smoke"}, "steps"),                              # the preset has no clock
    ({"PRESET": "cpu", "BUDGET_SECS": "0"}, "steps"),            # the clock switched off
    ({"PRESET": "cpu"}, "wallclock"),                            # 300 s on the clock
    ({"PRESET": "smoke", "MATCH": "tokens"}, "tokens"),          # token matching keeps its name
    ({"PRESET": "smoke", "MATCH": "steps"}, "steps"),
])
def test_match_says_what_decided_the_length(tmp_path, env, match):
    proc = recipe(tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"MATCH_IS={match}"
    assert f" MATCH={match} " in proc.stdout.splitlines()[0]  # the header of the recipe table
    if match == "steps":
        assert "steps: no clock (BUDGET_SECS=0)" in proc.stdout and "wall-clock" not in proc.stdout


def test_match_steps_with_a_clock_is_refused(tmp_path):
    proc = recipe(tmp_path, PRESET="cpu", MATCH="steps")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: MATCH=steps: the step cap decides only without a clock; "
                                   "set BUDGET_SECS=0")


def claim(cell, match, recipe_flags=("--steps", "4", "--train_budget_secs", "0")):
    """cells.claim as a recipe calls it: 0 and its word on stdout, or 1 and the error on stderr."""
    meta = {"name": cell.name, "scale": "5L", "backend": "torch", "preset": "smoke", "match": match,
            "matched_to": "", "recipe": list(recipe_flags)}
    try:
        print(cell_status.claim(cell, meta))
    except cell_status.CellError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def test_old_wallclock_label_is_kept_and_relabelled(tmp_path, capsys):
    cell = tmp_path / "5L_w0_s1337"
    assert claim(cell, "wallclock") == 0  # as the orchestrators recorded it before `steps`
    (cell / "results.json").write_text("{}")  # a finished cell: a refused claim would retrain nothing
    assert claim(cell, "steps") == 0
    assert capsys.readouterr().out.split() == ["written", "kept"]
    meta = json.loads((cell / "cell.json").read_text())
    assert meta["match"] == "steps" and meta["recipe"] == ["--steps", "4", "--train_budget_secs", "0"]
    # Claimed again with the old label (an older checkout): still the same run, label unchanged.
    assert claim(cell, "wallclock") == 0
    assert json.loads((cell / "cell.json").read_text())["match"] == "steps"


def test_other_labels_and_recipes_are_not_rewritten(tmp_path, capsys):
    cell = tmp_path / "5L_w0_s1337_tok"
    assert claim(cell, "tokens") == 0
    assert claim(cell, "steps") == 0  # a label is not identity: kept, but tokens is not relabelled
    assert json.loads((cell / "cell.json").read_text())["match"] == "tokens"
    # A different recipe is another run: refused, as before.
    assert claim(cell, "tokens", ("--steps", "5", "--train_budget_secs", "0")) == 1
    assert "--steps 4 -> 5" in capsys.readouterr().err
