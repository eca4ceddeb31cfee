"""Checkpoints and artifacts that carry their own model config.

Three forms, all written atomically (temporary file in the same folder, fsync, rename):
- `.npz` (portable, numpy only): every weight under its flat parameter name as float32, plus
  the model config as a JSON string under `__config__`. Any backend loads it.
- `step_<N>.pt` / `step_final.pt` (torch): the same weights plus optimizer and RNG states,
  data position and counters, enough to resume training.
- the int6 artifact (`.int6.lzma`): each 2-D matrix quantized per row to integers in
  [-31, 31] with a float16 scale per row; everything else float16; packed as .npz and
  compressed with lzma. Its size is what the challenge's 16,000,000-byte limit is about.

Only numpy is needed to read `.npz` and artifacts; torch is imported lazily for `.pt`.
"""

from __future__ import annotations

import io
import json
import lzma
import zipfile
from pathlib import Path

import numpy as np

from challenge_format import atomic_write_bytes

CONFIG_KEY = "__config__"
ARTIFACT_LIMIT_BYTES = 16_000_000
INT6_MAX = 31


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, truncated or inconsistent."""


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_npz(path, weights: dict[str, np.ndarray], config: dict) -> None:
    if CONFIG_KEY in weights:
        raise ValueError(f"{CONFIG_KEY} is reserved for the config")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    arrays[CONFIG_KEY] = np.array(json.dumps(config, sort_keys=True))
    atomic_write_bytes(path, _npz_bytes(arrays))


def load_npz(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (config dict, {name: float32 array}) from a portable .npz."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            if CONFIG_KEY not in z.files:
                raise CheckpointError(f"{path}: no {CONFIG_KEY} entry (not a meadow-golf .npz)")
            config = json.loads(str(z[CONFIG_KEY]))
            weights = {k: z[k] for k in z.files if k != CONFIG_KEY}
    except CheckpointError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable or truncated .npz ({type(e).__name__}: {e})") from None
    return config, weights


def save_torch_checkpoint(path, payload: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch_checkpoint(path) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a corrupt zip / pickle
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({type(e).__name__})") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path}: not a meadow-golf step checkpoint (no model/config)")
    return payload


def load_weights(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(config, float32 numpy weights) from a .npz or a step_*.pt, whichever `path` is."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".pt":
        payload = load_torch_checkpoint(path)
        weights = {k: v.detach().float().cpu().numpy() for k, v in payload["model"].items()}
        return payload["config"], weights
    raise CheckpointError(f"{path}: unknown checkpoint type (expected .npz or .pt)")


# ----------------------------------------------------------------------------- int6 artifact


def quantize_int6(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-row symmetric int6 for 2-D matrices (scale = rowmax/31), float16 for everything else."""
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float32)
        if w.ndim == 2:
            scale = np.abs(w).max(axis=1) / INT6_MAX
            scale = np.where(scale > 0, scale, 1.0).astype(np.float16)
            q = np.clip(np.rint(w / scale.astype(np.float32)[:, None]), -INT6_MAX, INT6_MAX)
            out[f"{name}::q"] = q.astype(np.int8)
            out[f"{name}::scale"] = scale
        else:
            out[name] = w.astype(np.float16)
    return out


def dequantize_int6(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for key, arr in packed.items():
        if key.endswith("::scale") or key == CONFIG_KEY:
            continue
        if key.endswith("::q"):
            name = key[: -len("::q")]
            scale = packed[f"{name}::scale"].astype(np.float32)
            weights[name] = arr.astype(np.float32) * scale[:, None]
        else:
            weights[key] = arr.astype(np.float32)
    return weights


def save_int6_artifact(path, weights: dict[str, np.ndarray], config: dict) -> int:
    """Write the compressed artifact; return its size in bytes."""
    packed = quantize_int6(weights)
    packed[CONFIG_KEY] = np.array(json.dumps(config, sort_keys=True))
    blob = lzma.compress(_npz_bytes(packed), preset=9 | lzma.PRESET_EXTREME)
    atomic_write_bytes(path, blob)
    return len(blob)


def load_int6_artifact(path) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    try:
        raw = lzma.decompress(path.read_bytes())
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            packed = {k: z[k] for k in z.files}
    except (OSError, lzma.LZMAError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: unreadable artifact ({type(e).__name__}: {e})") from None
    if CONFIG_KEY not in packed:
        raise CheckpointError(f"{path}: artifact has no {CONFIG_KEY}")
    return json.loads(str(packed[CONFIG_KEY])), dequantize_int6(packed)
