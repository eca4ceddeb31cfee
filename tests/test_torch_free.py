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
