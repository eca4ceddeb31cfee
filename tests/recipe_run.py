"""Run an experiment's recipe (its plan.py) in the test's own process, as its bash entry point would.

The bash entry points are `exec python <experiment>/plan.py RECIPE`; here the same RECIPES run
with an explicit environment (nothing leaks in from the caller's), stdout and stderr captured.
"""

from __future__ import annotations

import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path

from meadow_golf.recipes import cli

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {
    "matched_ablation": ROOT / "experiments" / "2026-04-09_matched_ablation",
    "share_ratio_and_scale": ROOT / "experiments" / "2026-12-01_share_ratio_and_scale",
    "absorbing_noise": ROOT / "experiments" / "2026-12-01_absorbing_noise",
    "retrodiction": ROOT / "experiments" / "2026-04-07_retrodiction_research_diary",
}
_PLANS: dict = {}


def plan_module(experiment: str):
    """An experiment folder's plan.py as a module (the folders' dated names are not importable)."""
    if experiment not in _PLANS:
        path = EXPERIMENTS[experiment] / "plan.py"
        spec = importlib.util.spec_from_file_location(f"plan_{experiment}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _PLANS[experiment] = module
    return _PLANS[experiment]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def recipe(experiment: str, name: str, check: bool = True, **env: str) -> Result:
    """plan.py NAME with exactly env as its environment (plus PATH and HOME)."""
    full = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    full.update({"HEARTBEAT_SECS": "0", **env})
    out, err = io.StringIO(), io.StringIO()
    rc = cli.run(plan_module(experiment).RECIPES, name, env=full, out=out, err=err)
    result = Result(rc, out.getvalue(), err.getvalue())
    if check:
        assert rc == 0, f"{name} exited {rc}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def dirs(root: Path, data_dir: Path, cells: Path | None = None) -> dict:
    return {"DATA_DIR": str(data_dir), "CKPT_DIR": str(cells or root / "cells"), "LOG_DIR": str(root / "logs"),
            "OUT_DIR": str(root / "out")}
