"""The MLX side of meadow_golf imports no torch: a Mac install with only the mlx extra trains with it.

A subprocess installs a meta-path finder that refuses `torch` (and every torch.* module), then
imports the MLX modules and the torch-free shared ones. An `import torch` anywhere along their
imports raises ImportError there, and the subprocess fails naming the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlx.core")

pytestmark = pytest.mark.mlx

REPO = Path(__file__).resolve().parents[1]
TORCH_FREE = ("model.gpt_mlx", "train.optim_mlx", "eval.mlx_backend", "train.train_cdm_mlx", "train.core",
              "train.flags", "train.schedule", "train.run_folder", "model.noise",
              "model.config", "train.optim_common")

PROBE = f"""
import importlib, sys

class RefuseTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch refused (importing {{name}})")
        return None

sys.meta_path.insert(0, RefuseTorch())
for module in {TORCH_FREE!r}:
    importlib.import_module("meadow_golf." + module)
assert "torch" not in sys.modules
print("ok")
"""


def test_the_mlx_modules_import_without_torch():
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


RECIPE_WITHOUT_TORCH = PROBE.split("for module in")[0] + """
import io, json, sys
sys.path.insert(0, TESTS)
from recipe_run import recipe
env = dict(PRESET="smoke", BACKEND="mlx", SCALES="5L", WEIGHTS="0.3 0", DATA_DIR=sys.argv[1],
           CKPT_DIR=sys.argv[2] + "/cells", LOG_DIR=sys.argv[2] + "/logs", OUT_DIR=sys.argv[2] + "/out")
recipe("matched_ablation", "run_6", **env)
recipe("matched_ablation", "eval_6", **env)
assert "torch" not in sys.modules
print("ok")
"""


def test_an_mlx_recipe_runs_with_torch_blocked(shakespeare_data, tmp_path):
    """Issue 18 item 1: after `pip install -e '.[mlx]'` a Mac user's
    `PRESET=smoke BACKEND=mlx run_6.sh` was refused with "cannot import torch". With every torch
    import refused, run_6 and eval_6 with BACKEND=mlx train, evaluate and summarize."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), "OMP_NUM_THREADS": "1"}
    code = RECIPE_WITHOUT_TORCH.replace("TESTS", repr(str(REPO / "tests")))
    proc = subprocess.run([sys.executable, "-c", code, str(shakespeare_data), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout[-2000:] + proc.stderr[-2000:]
    import json
    for name in ("5L_w0.3_s1337", "5L_w0_s1337"):
        cell = tmp_path / "cells" / name
        assert json.loads((cell / "cell.json").read_text())["backend"] == "mlx"
        assert list(cell.glob("step_*.safetensors")) and not list(cell.glob("step_*.pt"))
        assert json.loads((cell / "eval_cf.json").read_text())["backend"] == "mlx"
    assert (tmp_path / "out" / "results.json").is_file()
