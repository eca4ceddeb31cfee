"""MLX glue shared by the MLX trainer and the evaluators: the twin of torch_backend.py.

    resolve_device(name) -> mx.Device          auto | cpu | mps (Apple GPU) | cuda (MLX CUDA build)
    resolve_dtype(name, device) -> mx.Dtype    auto: bfloat16 on a GPU, float32 on the CPU
    load_model(path, dtype="auto", *, xsa_last_n=None, original_arch=None) -> (model_mlx.GPT, GPTConfig)
        from a portable .npz, a torch step_*.pt or an MLX step_*.safetensors; the config is the
        checkpoint's own. The same .npz loads into either backend (no conversion). The original
        record's config-less .npz / .pt load too, given xsa_last_n or original_arch.
    ar_val_bpb(model, tokens, seq_len, batch_size, tables) -> dict
        the trainer's Pure-AR val_bpb, same definition as torch_backend.ar_val_bpb: consecutive
        non-overlapping windows, trailing partial window dropped, NLL summed in float32 per
        batch and in float64 across batches, bytes from the METHOD.md §2 tables on the same targets.
    MLXScorer(model)(inputs, is_causal, targets) -> float64 (B, T) target log-probs
        the scorer contract of cf.py (see torch_backend.TorchScorer).
    save_step_checkpoint / load_step_checkpoint: the MLX trainer's resumable step checkpoints.
    MLXEval(device): the evaluators' backend (--backend mlx; the contract is in backends.py).

MLX runs on the default device (mx.set_default_device); there is no device argument. The
forward passes are compiled with the model's parameters as explicit inputs, so a compiled
function always sees the current weights.

Step checkpoint format (MLX-native, one file, written atomically): `step_<N>.safetensors` with
arrays "model/<name>" (float32 weights under the shared flat names), "optimizer/<flat key>"
(tree_flatten of the optimizer state: step counts, learning rates, momentum, buffers),
"ema/<name>" (when EMA runs) and "rng/cdm_key"; its safetensors metadata holds
"format" = STEP_FORMAT and "state" = a JSON object with the model config, the flags, the data
stream position, counters and the validation history.
"""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from meadow_golf.eval.backend_base import EvalBackend
from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.model.checkpoint import (CheckpointError, check_arch_flags, check_config_against_flags, error_reason,
                                    load_weights)
from meadow_golf.data.loader import validation_result, validation_windows
from meadow_golf.model.gpt_mlx import GPT, GPTConfig, load_state_numpy, state_dict_numpy

STEP_FORMAT = "meadow-golf-mlx-step/1"


# ----------------------------------------------------------------------------- device, dtype


def resolve_device(name: str = "auto") -> mx.Device:
    if name == "auto":
        return mx.default_device()
    if name == "cpu":
        return mx.Device(mx.cpu)
    if name == "mps":
        if not mx.metal.is_available():
            raise ValueError("--device mps requested but MLX has no Metal GPU here")
        return mx.Device(mx.gpu)
    if name == "cuda":
        if not (hasattr(mx, "cuda") and mx.cuda.is_available()):
            raise ValueError("--device cuda requested but this MLX build has no CUDA GPU")
        return mx.Device(mx.gpu)
    raise ValueError(f"unknown device {name!r} (auto, cuda, mps or cpu)")


def resolve_dtype(name="auto", device: mx.Device | None = None):
    """Compute dtype: "auto" is bfloat16 on a GPU (as torch autocast on CUDA), float32 on the CPU."""
    if isinstance(name, mx.Dtype):
        return name
    if name == "auto":
        device = device if device is not None else mx.default_device()
        return mx.bfloat16 if device.type == mx.gpu else mx.float32
    if name in ("float32", "bfloat16"):
        return getattr(mx, name)
    raise ValueError(f"unknown dtype {name!r} (auto, float32 or bfloat16)")


def device_name(device: mx.Device) -> str:
    return f"mlx:{'gpu' if device.type == mx.gpu else 'cpu'}"


# ----------------------------------------------------------------------------- losses


def cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Per-position cross-entropy in nats, float32, shape of targets."""
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)
    return mx.logsumexp(logits, axis=-1) - picked


# ----------------------------------------------------------------------------- checkpoints


def save_step_checkpoint(path, *, model_weights: dict[str, mx.array], optimizer_state: dict,
                         state: dict, ema: dict[str, mx.array] | None = None,
                         cdm_key: mx.array | None = None) -> None:
    arrays = {f"model/{k}": v for k, v in model_weights.items()}
    arrays.update({f"optimizer/{k}": v for k, v in tree_flatten(optimizer_state)})
    if ema is not None:
        arrays.update({f"ema/{k}": v for k, v in ema.items()})
    if cdm_key is not None:
        arrays["rng/cdm_key"] = cdm_key
    buf = io.BytesIO()
    mx.save_safetensors(buf, arrays, metadata={"format": STEP_FORMAT, "state": json.dumps(state, sort_keys=True)})
    atomic_write_bytes(path, buf.getvalue())


def load_step_checkpoint(path) -> dict:
    """{"state": dict, "model": {name: array}, "optimizer": tree, "ema": dict | None, "cdm_key": array | None}."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        arrays, metadata = mx.load(str(path), return_metadata=True)
    except Exception as e:  # mx.load raises RuntimeError / ValueError / OSError for a damaged file
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({error_reason(e)})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != STEP_FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise CheckpointError(f"{path}: not an MLX step checkpoint (format {found!r})")
    try:
        state = json.loads(metadata["state"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable state metadata ({error_reason(e)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path}: no model config in the state metadata")
    parts: dict[str, dict] = {"model": {}, "optimizer": {}, "ema": {}, "rng": {}}
    for key, value in arrays.items():
        head, _, name = key.partition("/")
        if head not in parts:
            raise CheckpointError(f"{path}: unexpected entry {key!r}")
        parts[head][name] = value
    if not parts["model"]:
        raise CheckpointError(f"{path}: no model weights")
    try:
        optimizer = tree_unflatten(list(parts["optimizer"].items())) if parts["optimizer"] else None
    except Exception as e:  # entry names that do not form one tree (a damaged key)
        raise CheckpointError(f"{path}: inconsistent optimizer entries ({error_reason(e)})") from None
    return {
        "state": state,
        "model": parts["model"],
        "optimizer": optimizer,
        "ema": parts["ema"] or None,
        "cdm_key": parts["rng"].get("cdm_key"),
    }


def read_weights(path, *, xsa_last_n: int | None = None,
                 original_arch: str | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(config dict, float32 numpy weights) from .npz, step_*.pt or an MLX step_*.safetensors;
    the original record's .npz / .pt too, given one of the two flags (checkpoint.read_checkpoint)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        check_arch_flags(xsa_last_n, original_arch)
        ckpt = load_step_checkpoint(path)
        check_config_against_flags(path, ckpt["state"]["config"], xsa_last_n, original_arch)
        return ckpt["state"]["config"], {k: np.array(v.astype(mx.float32)) for k, v in ckpt["model"].items()}
    return load_weights(path, xsa_last_n=xsa_last_n, original_arch=original_arch)


def load_model(path, dtype="auto", *, xsa_last_n: int | None = None,
               original_arch: str | None = None) -> tuple[GPT, GPTConfig]:
    """Build the MLX model from the checkpoint's config and load its weights (strict).

    dtype is the compute dtype (see model_mlx): "auto" follows the default device. The two flags
    are for the original record's config-less checkpoints (see read_weights)."""
    config_dict, weights = read_weights(path, xsa_last_n=xsa_last_n, original_arch=original_arch)
    config = GPTConfig.from_dict(config_dict)
    model = GPT(config, compute_dtype=resolve_dtype(dtype))
    load_state_numpy(model, weights)
    model.eval()
    return model, config


# ----------------------------------------------------------------------------- evaluation


def _compiled_nll_sum(model: GPT):
    @partial(mx.compile, inputs=model.state)
    def nll_sum(chunk: mx.array) -> mx.array:
        logits = model(chunk[:, :-1], is_causal=True)
        return mx.sum(cross_entropy(logits, chunk[:, 1:]))

    return nll_sum


def ar_nll_sum(model: GPT, tokens: np.ndarray, seq_len: int, batch_size: int) -> tuple[float, int, np.ndarray]:
    """torch_backend.ar_nll_sum in MLX: (NLL sum in nats, number of targets, the (N, T+1) windows)."""
    windows = validation_windows(tokens, seq_len)
    n_windows = len(windows)
    nll_sum = _compiled_nll_sum(model)
    total = 0.0
    for start in range(0, n_windows, batch_size):
        chunk = mx.array(windows[start : start + batch_size].astype(np.int32))
        total += float(np.float64(nll_sum(chunk).item()))
    return total, n_windows * seq_len, windows


def ar_val_bpb(model: GPT, tokens: np.ndarray, seq_len: int, batch_size: int, tables) -> dict:
    """The trainer's Pure-AR val_bpb (METHOD.md §2, no clamping); the keys of torch_backend.ar_val_bpb."""
    nll, _, windows = ar_nll_sum(model, tokens, seq_len, batch_size)
    return validation_result(nll, windows, tables)


class MLXScorer:
    """scorer(inputs (B,T) int, is_causal, targets (B,T) int) -> log-probs (B,T) float64.

    Only the target log-probabilities leave the device. One compiled forward per mode.
    """

    def __init__(self, model: GPT):
        self.model = model
        model.eval()
        self._fns = {mode: self._compile(mode) for mode in (True, False)}

    def _compile(self, is_causal: bool):
        model = self.model

        @partial(mx.compile, inputs=model.state)
        def target_logp(inputs: mx.array, targets: mx.array) -> mx.array:
            return -cross_entropy(model(inputs, is_causal=is_causal), targets)

        return target_logp

    def __call__(self, inputs: np.ndarray, is_causal: bool, targets: np.ndarray) -> np.ndarray:
        x = mx.array(np.asarray(inputs).astype(np.int32))
        y = mx.array(np.asarray(targets).astype(np.int32))
        return np.array(self._fns[bool(is_causal)](x, y)).astype(np.float64)

    def max_logp(self, inputs: np.ndarray, is_causal: bool) -> np.ndarray:
        """(B, T) float64: each row's largest log-probability over the vocabulary (the model's
        confidence, cf.confidence_order). Uncompiled: only the adaptive decoder asks for it."""
        logits = self.model(mx.array(np.asarray(inputs).astype(np.int32)), is_causal=is_causal).astype(mx.float32)
        return np.array(mx.max(logits, axis=-1) - mx.logsumexp(logits, axis=-1)).astype(np.float64)


def _compiled_token_nll(model: GPT):
    @partial(mx.compile, inputs=model.state)
    def token_nll(chunk: mx.array) -> mx.array:
        return cross_entropy(model(chunk[:, :-1], is_causal=True), chunk[:, 1:])

    return token_nll


class MLXEval(EvalBackend):
    """The evaluators' MLX backend (contract in backend_base.py). device: auto | cpu | mps | cuda; it
    becomes MLX's default device (MLX has no per-array device). The compute dtype follows it as in
    the trainer: bfloat16 on a GPU (precision "bf16", like torch's autocast on CUDA), float32 on
    the CPU."""

    name = "mlx"

    def __init__(self, device="auto"):
        self.device = resolve_device(device)
        mx.set_default_device(self.device)
        self.dtype = resolve_dtype("auto", self.device)
        self.device_label = device_name(self.device)
        self.precision = "bf16" if self.dtype == mx.bfloat16 else "float32"

    def build(self, config: dict, weights: dict[str, np.ndarray]) -> tuple[GPT, GPTConfig]:
        gpt_config = GPTConfig.from_dict(config)
        model = GPT(gpt_config, compute_dtype=self.dtype)
        load_state_numpy(model, weights)
        model.eval()
        return model, gpt_config

    def init_weights(self, config: GPTConfig) -> dict[str, np.ndarray]:
        return state_dict_numpy(GPT(config))

    def scorer(self, model: GPT) -> MLXScorer:
        return MLXScorer(model)

    def logits(self, model: GPT, inputs: np.ndarray, is_causal: bool, columns=None) -> np.ndarray:
        out = model(mx.array(np.asarray(inputs).astype(np.int32)), is_causal=is_causal).astype(mx.float32)
        if columns is not None:
            out = mx.take(out, mx.array(np.asarray(columns, dtype=np.int32)), axis=-1)
        return np.array(out)

    def ar_nll_sum(self, model: GPT, tokens: np.ndarray, seq_len: int, batch_size: int):
        """ar_nll_sum with the per-token NLLs summed in float64 on the host, as torch_backend's:
        eval_cf's consistency check compares it with the scorer's per-token values to 1e-9, which
        the trainer's float32 sum per batch (ar_nll_sum above) would not meet."""
        windows = validation_windows(tokens, seq_len)
        token_nll = _compiled_token_nll(model)
        total = 0.0
        for start in range(0, len(windows), batch_size):
            chunk = mx.array(windows[start : start + batch_size].astype(np.int32))
            total += float(np.array(token_nll(chunk)).astype(np.float64).sum())
        return total, len(windows) * seq_len, windows

    def num_params(self, model: GPT) -> int:
        return model.num_params()
