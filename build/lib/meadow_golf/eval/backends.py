"""The evaluators' choice of framework (--backend torch|mlx), without importing either one here.

eval_cf.py, leakage_test.py and gen_test.py talk to a model only through an EvalBackend, so the
same code scores a checkpoint with PyTorch (torch_backend.TorchEval) or MLX (mlx_backend.MLXEval).
The framework is imported by load_backend, and only the one asked for: with --backend mlx no
module on the path imports torch, so a Mac with `pip install -e '.[mlx]'` and no torch can
evaluate (tests/test_mlx_eval.py proves it with torch made unimportable).
The contract a backend fulfils is backend_base.EvalBackend's.
"""

from __future__ import annotations

from meadow_golf.eval.backend_base import EvalBackend

BACKENDS = ("torch", "mlx")
# What to install when a backend's framework is missing (pyproject.toml's extras).
INSTALL_HINT = {
    "torch": "pip install -e '.[torch]' (or pick --backend mlx)",
    "mlx": "pip install -e '.[mlx]' (Apple silicon, or mlx[cpu] on Linux)",
}


def load_backend(name: str, device: str = "auto") -> EvalBackend:
    """The backend `name` on `device` (auto | cuda | mps | cpu). ValueError (one `error:` line in
    the tools) when the name is unknown, its framework is not installed, or the device is absent."""
    if name not in BACKENDS:
        raise ValueError(f"--backend {name}: unknown backend; choose {' or '.join(BACKENDS)}")
    try:
        if name == "torch":
            from meadow_golf.eval.torch_backend import TorchEval as backend_class
        else:
            from meadow_golf.eval.mlx_backend import MLXEval as backend_class
    except ImportError as e:
        raise ValueError(f"--backend {name}: its framework is not importable ({e}); {INSTALL_HINT[name]}") from None
    return backend_class(device)
