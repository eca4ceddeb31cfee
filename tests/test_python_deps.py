"""A missing Python module stops an entry point with one line saying how to get it (issue 13 item 2).

The missing module is simulated with a sitecustomize.py on PYTHONPATH that puts None in
sys.modules for it (what Python does for a module known not to exist), so the test needs no
second environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meadow_golf.common.python_deps import missing, missing_line

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments" / "2026-04-09_matched_ablation"


def env_without(tmp_path: Path, *modules: str, **extra: str) -> dict:
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules))
    return {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT / 'scripts'}", "PYTHON": sys.executable,
            "MEADOW_SKIP_INSTALL": "1", **extra}


def assert_one_line(res, *names: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr
    for name in names:
        assert name in lines[0]
    assert "pip install -e" in lines[0]


def test_missing_reports_blocked_and_absent_modules(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    assert missing(["numpy", "sentencepiece", "no_such_module_x", "no_such_pkg_y.sub"]) == [
        "sentencepiece", "no_such_module_x", "no_such_pkg_y.sub"]
    line = missing_line(["mlx"], extra="mlx", python_label="PYTHON=python")
    assert line.startswith("error: PYTHON=python cannot import mlx;") and "pip install -e '.[mlx]'" in line


def test_python_deps_script_needs_only_the_standard_library(tmp_path):
    """The recipes run scripts/python_deps.py before anything else: with none of the project's
    third-party modules importable it still runs, and names the missing ones in one line."""
    blocked = ("torch", "numpy", "sentencepiece", "matplotlib", "mlx", "huggingface_hub")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "python_deps.py"), *blocked],
                         env=env_without(tmp_path, *blocked), capture_output=True, text=True, timeout=60)
    assert_one_line(res, *blocked)


def test_prepare_data_without_numpy_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "shakespeare", "--out",
                          str(tmp_path / "data")], env=env_without(tmp_path, "numpy"),
                         capture_output=True, text=True, timeout=60)
    assert_one_line(res, "numpy")
    assert not (tmp_path / "data").exists()


def test_install_hints_name_the_extra_with_a_trainer(tmp_path):
    """Issue 18 item 2: the hints said `pip install -e .`, which leaves torch missing (an extra).
    A hint without a named extra now gives the torch extra, and the mlx one for a Mac."""
    line = missing_line(["sentencepiece"])
    assert "pip install -e '.[torch]'" in line and "pip install -e '.[mlx]'" in line
    assert "pip install -e ." not in line.replace("pip install -e '.[", "")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "shakespeare", "--out",
                          str(tmp_path / "data")], env=env_without(tmp_path, "sentencepiece"),
                         capture_output=True, text=True, timeout=60)
    assert_one_line(res, "sentencepiece", "pip install -e '.[torch]'")


@pytest.mark.parametrize("recipe", ["run_6.sh", "eval_seeds.sh"])
def test_recipe_without_torch_stops_before_the_first_cell(tmp_path, recipe):
    env = env_without(tmp_path, "torch", PRESET="smoke", CKPT_DIR=str(tmp_path / "cells"),
                      LOG_DIR=str(tmp_path / "logs"), OUT_DIR=str(tmp_path / "out"))
    res = subprocess.run(["bash", str(EXP / recipe)], env=env, capture_output=True, text=True, timeout=60)
    # Issue 18 item 2: the hint names the extra that installs torch, not `pip install -e .`.
    assert_one_line(res, "torch", "PYTHON=", "pip install -e '.[torch]'")
    assert not (tmp_path / "cells").exists() and not (tmp_path / "logs").exists()


def test_recipe_mlx_backend_needs_mlx(tmp_path):
    env = env_without(tmp_path, "mlx", PRESET="smoke", BACKEND="mlx", CKPT_DIR=str(tmp_path / "cells"))
    res = subprocess.run(["bash", str(EXP / "run_6.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert_one_line(res, "mlx", "'.[mlx]'")


def test_retrodiction_ab_without_sentencepiece_is_one_line(tmp_path):
    script = ROOT / "experiments" / "2026-04-07_retrodiction_research_diary" / "run_ab.sh"
    env = env_without(tmp_path, "sentencepiece", OUT_DIR=str(tmp_path / "ab"), DATA_DIR=str(tmp_path))
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert_one_line(res, "sentencepiece")
    assert not (tmp_path / "ab").exists()
