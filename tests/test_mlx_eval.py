"""The evaluators under --backend mlx: the same numbers as --backend torch, and no torch import.

Parity: one tiny trained .npz scored by eval_cf.py with each backend on the same windows: the ar
BPB within 1e-4 and cf_valid within 1e-3 (the two frameworks' float32 kernels differ by a few
ulps per op, far inside both), each backend's own consistency check passing.

No torch: the evaluators run in a subprocess whose sitecustomize.py sets sys.modules["torch"] =
None, so any `import torch` on the path raises ImportError and the run fails; --backend torch in
the same interpreter is refused with one `error:` line naming the install line.

MLX JIT-compiles its fused CPU kernels with g++ on first use (see test_mlx_parity.py), so these
runs disable compilation (mx.disable_compile in-process, MLX_DISABLE_COMPILE=1 in subprocesses):
the same graphs, unfused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

mx = pytest.importorskip("mlx.core")

from meadow_golf.eval import eval_cf  # noqa: E402

pytestmark = pytest.mark.mlx


def torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# Skipped before the fixtures run: tiny_run trains with torch (a venv with only the mlx extra
# runs the no-torch test alone).
needs_torch = pytest.mark.skipif(not torch_importable(), reason="needs torch (the torch side of the parity)")

REPO = Path(__file__).resolve().parents[1]
EXP = REPO / "experiments" / "2026-04-09_matched_ablation"
WINDOWS = ["--n_seqs", "8", "--seq_len", "32", "--batch_size", "4", "--decoders", "ar,cf_valid"]


@pytest.fixture
def eager_mlx():
    mx.disable_compile()
    yield
    mx.enable_compile()


def no_torch_env(tmp_path: Path) -> dict:
    """An environment whose interpreter cannot import torch (and runs MLX uncompiled)."""
    site = tmp_path / "no_torch_site"
    site.mkdir(exist_ok=True)
    # None in sys.modules makes `import torch` raise ImportError wherever it happens.
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["torch"] = None\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO / "scripts")])
    env["MLX_DISABLE_COMPILE"] = "1"
    return env


def run_tool(tool: str, env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXP / tool), *argv], env=env, capture_output=True, text=True,
                          timeout=600)


@needs_torch
def test_mlx_and_torch_evaluators_agree(shakespeare_data, tiny_run, tmp_path, capsys, eager_mlx):
    run, _ = tiny_run
    results = {}
    for backend in ("torch", "mlx"):
        out = tmp_path / f"{backend}.json"
        rc = eval_cf.main(["--checkpoint", str(run / "final_model.npz"), "--data_dir", str(shakespeare_data),
                           "--device", "cpu", "--backend", backend, "--json_out", str(out), *WINDOWS])
        stdout = capsys.readouterr().out
        assert rc == eval_cf.EXIT_OK, stdout
        assert f"backend:{backend}" in stdout
        results[backend] = json.loads(out.read_text())
    t, m = results["torch"], results["mlx"]
    assert (t["backend"], m["backend"]) == ("torch", "mlx") and m["device"] == "mlx:cpu"
    assert t["windows"]["sha256"] == m["windows"]["sha256"]
    assert t["decoders"]["ar"]["bytes"] == m["decoders"]["ar"]["bytes"]
    assert abs(t["decoders"]["ar"]["bpb"] - m["decoders"]["ar"]["bpb"]) <= 1e-4
    assert abs(t["decoders"]["cf_valid"]["bpb"] - m["decoders"]["cf_valid"]["bpb"]) <= 1e-3
    # Random windows: neither backend makes the (self-comparing) consistency check; each says why.
    assert t["consistency"]["run"] is False and m["consistency"]["run"] is False
    assert m["precision"] == "float32"


@needs_torch
def test_random_init_is_the_same_model_on_both_backends(eager_mlx):
    """leakage_test's random init draws every matrix with numpy: both backends build one model."""
    import numpy as np

    from meadow_golf.eval import leakage as leakage_test
    from meadow_golf.eval.backends import load_backend

    inputs = np.random.default_rng(0).integers(0, 16, size=(2, 12))
    logits = {}
    for name in ("torch", "mlx"):
        backend = load_backend(name, "cpu")
        model, _ = leakage_test.random_init_model(16, 3, backend)
        logits[name] = backend.logits(model, inputs, is_causal=False)
    np.testing.assert_allclose(logits["mlx"], logits["torch"], rtol=1e-4, atol=1e-4)


def test_the_mlx_evaluators_import_no_torch(shakespeare_data, tmp_path):
    """eval_cf, leakage_test and gen_test with --backend mlx where torch cannot be imported.

    The checkpoint is written by the MLX model itself (no torch anywhere): an untrained tiny GPT
    of the data's vocabulary saved as a portable .npz."""
    env = no_torch_env(tmp_path)
    vocab = json.loads((shakespeare_data / "meta.json").read_text())["vocab_size"]
    ckpt = tmp_path / "mlx_model.npz"
    make = ("from meadow_golf.model import gpt_mlx as model_mlx, checkpoint; from meadow_golf.model.config import GPTConfig; "
            f"c = GPTConfig(vocab_size={vocab}, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, "
            "bigram_dim=16, xsa_last_n=1); "
            f"checkpoint.save_npz({str(ckpt)!r}, model_mlx.state_dict_numpy(model_mlx.GPT(c)), c.to_dict())")
    proc = subprocess.run([sys.executable, "-c", make], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    common = ["--checkpoint", str(ckpt), "--data_dir", str(shakespeare_data), "--device", "cpu", "--backend", "mlx"]
    proc = run_tool("eval_cf.py", env, *common, *WINDOWS, "--json_out", str(tmp_path / "e.json"))
    assert proc.returncode == 0, proc.stderr
    assert "backend:mlx" in proc.stdout and f"consistency: {eval_cf.NOT_RUN_RANDOM}" in proc.stdout
    proc = run_tool("leakage_test.py", env, "--random_init", "--backend", "mlx", "--device", "cpu",
                    "--decoders", "ar,cf_valid", "--norm_len", "3", "--json_out", str(tmp_path / "l.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: every decoder" in proc.stdout
    proc = run_tool("gen_test.py", env, *common, "--n_windows", "4", "--seq_len", "16", "--spans", "1,4",
                    "--rounds", "1,2", "--max_new_tokens", "4", "--json_out", str(tmp_path / "g.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "g.json").read_text())["backend"] == "mlx"

    # The same interpreter refuses --backend torch in one line, naming what to install.
    proc = run_tool("eval_cf.py", env, *common[:-2], "--backend", "torch", *WINDOWS)
    assert proc.returncode == eval_cf.EXIT_BAD_INPUT
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --backend torch:") and ".[torch]" in lines[0]
