"""The evaluators' choice of framework (--backend torch|mlx), without importing either one here.

eval_cf.py, leakage_test.py and gen_test.py talk to a model only through an EvalBackend, so the
same code scores a checkpoint with PyTorch (torch_backend.TorchEval) or MLX (mlx_backend.MLXEval).
The framework is imported by load_backend, and only the one asked for: with --backend mlx no
module on the path imports torch, so a Mac with `pip install -e '.[mlx]'` and no torch can
evaluate (tests/test_mlx_eval.py proves it with torch made unimportable).

What a backend provides (every array crossing it is numpy):
    name                     "torch" | "mlx"
    device_label             the device in words, for reports ("cuda", "cpu", "mlx:gpu", ...)
    precision                "float32" or "bf16": what the forward runs in on this device
    build(config, weights)   (model, model_config.GPTConfig) from a config dict and float32 weights
    init_weights(config)     a fresh model's float32 weights (names, shapes, constant inits)
    scorer(model)            the cf.py scorer: (inputs, is_causal, targets) -> float64 log-probs
    logits(model, inputs, is_causal, columns=None)
                             float32 (B, T, V) logits, or only the given vocabulary columns
                             (selected before they leave the device)
    ar_nll_sum(model, tokens, seq_len, batch_size)
                             the trainer's Pure-AR pass over consecutive windows: (NLL in nats,
                             the per-token values summed in float64; number of targets; the
                             (N, T+1) windows scored)
    num_params(model)
"""

from __future__ import annotations

BACKENDS = ("torch", "mlx")
# What to install when a backend's framework is missing (pyproject.toml's extras).
INSTALL_HINT = {
    "torch": "pip install -e '.[torch]' (or pick --backend mlx)",
    "mlx": "pip install -e '.[mlx]' (Apple silicon, or mlx[cpu] on Linux)",
}


class EvalBackend:
    """Base of TorchEval and MLXEval (see the module docstring for the contract)."""

    name = ""
    device_label = ""
    precision = "float32"


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


def as_backend(backend_or_device) -> EvalBackend:
    """An EvalBackend as it is; anything else is taken as a torch device (the evaluators' helpers
    took a torch.device before --backend existed, and their callers may still pass one)."""
    if isinstance(backend_or_device, EvalBackend):
        return backend_or_device
    from meadow_golf.eval.torch_backend import TorchEval

    return TorchEval(backend_or_device)
