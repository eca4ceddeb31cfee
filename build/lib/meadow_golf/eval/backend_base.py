"""The base class of the evaluators' backends (torch_backend.TorchEval, mlx_backend.MLXEval).

It lives apart from backends.py (which chooses and imports one backend) so that each backend
imports its base without importing the module that imports it: no import circle.

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


class EvalBackend:
    """Base of TorchEval and MLXEval (the contract is the module docstring)."""

    name = ""
    device_label = ""
    precision = "float32"
