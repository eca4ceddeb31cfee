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

Every reader turns any failure to read a file (missing, truncated, corrupt, foreign) into one
CheckpointError whose one-line message starts with the file's path. The parsers underneath
(zipfile, numpy, lzma, torch's zip reader and unpickler) raise a wide and version-dependent
range of exception types for damaged input, so the readers catch Exception around the parsing
itself and nowhere else.
"""

from __future__ import annotations

import io
import json
import lzma
import re
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


def error_reason(e: BaseException) -> str:
    """`Type: first sentence of the message` on one short line, for a message that names the file
    first (torch's messages go on for several sentences of advice)."""
    text = " ".join(str(e).split())
    text = text.split(". ")[0][:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found" if not path.exists() else f"{path}: not a file")


def _config_dict(path: Path, text: str) -> dict:
    try:
        config = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{path}: {CONFIG_KEY} is not valid JSON ({error_reason(e)})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: {CONFIG_KEY} is not a JSON object")
    return config


def _float_arrays(path: Path, arrays: dict) -> dict[str, np.ndarray]:
    """The weights as float32, refusing entries that are not real numbers (a damaged dtype)."""
    out = {}
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise CheckpointError(f"{path}: entry {name!r} has dtype {arr.dtype}, not a real number type")
        out[name] = arr.astype(np.float32, copy=False)
    return out


def load_npz(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (config dict, {name: float32 array}) from a portable .npz."""
    path = Path(path)
    _require_file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if CONFIG_KEY not in z.files:
                raise CheckpointError(
                    f"{path}: no {CONFIG_KEY} entry, so the model config is unknown (a weights-only .npz, "
                    "e.g. saved by a backend's own save_weights, is not a meadow-golf checkpoint; use the "
                    "trainer's final_model.npz or a step checkpoint)")
            config_text = str(z[CONFIG_KEY])
            arrays = {k: z[k] for k in z.files if k != CONFIG_KEY}
    except CheckpointError:
        raise
    except Exception as e:  # zipfile, zlib, numpy's .npy parser, MemoryError for a damaged shape, ...
        raise CheckpointError(f"{path}: unreadable or truncated .npz ({error_reason(e)})") from None
    return _config_dict(path, config_text), _float_arrays(path, arrays)


def save_torch_checkpoint(path, payload: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def _numpy_pickle_globals() -> list:
    """What a step checkpoint pickles beyond torch's weights_only defaults: the numpy RNG state
    (np.random.get_state(): a uint32 ndarray). Everything else in it is tensors, numbers,
    strings, lists, tuples and dicts. A new kind of object in the payload must be added here."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    allowed = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    # A checkpoint written under numpy 1.x names _reconstruct by its old module path.
    allowed.append((_reconstruct, "numpy.core.multiarray._reconstruct"))
    return allowed


def _torch_load_reason(e: BaseException) -> str:
    # torch's weights_only refusal is a long multi-line text; its useful part is the global it refused.
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    if refused:
        return f"it pickles {refused.group(1)}, which is not on the weights_only allow list"
    return error_reason(e)


def load_torch_checkpoint(path) -> dict:
    """A step checkpoint's payload, unpickled with weights_only (no arbitrary code from the file)."""
    import torch

    path = Path(path)
    _require_file(path)
    try:
        with torch.serialization.safe_globals(_numpy_pickle_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's zip reader and unpickler raise many types for a damaged file
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({_torch_load_reason(e)})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict) \
            or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{path}: not a meadow-golf step checkpoint (no model/config)")
    return payload


def load_weights(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(config, float32 numpy weights) from a .npz or a step_*.pt, whichever `path` is."""
    path = Path(path)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".pt":
        import torch

        payload = load_torch_checkpoint(path)
        bad = [k for k, v in payload["model"].items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: model entry {bad[0]!r} is not a tensor")
        try:
            weights = {k: v.detach().float().cpu().numpy() for k, v in payload["model"].items()}
        except Exception as e:  # e.g. a complex or quantized tensor from a damaged file
            raise CheckpointError(f"{path}: model weights cannot be read as float32 ({error_reason(e)})") from None
        return payload["config"], weights
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: an MLX step checkpoint, which this backend does not read; "
                              "use the run's final_model.npz (both backends read it)")
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
    _require_file(path)
    try:
        raw = lzma.decompress(path.read_bytes())
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            packed = {k: z[k] for k in z.files}
    except Exception as e:  # lzma, zipfile, numpy's .npy parser, ... (xz's CRC catches flipped bytes)
        raise CheckpointError(f"{path}: unreadable or truncated artifact ({error_reason(e)})") from None
    if CONFIG_KEY not in packed:
        raise CheckpointError(f"{path}: artifact has no {CONFIG_KEY}")
    config = _config_dict(path, str(packed.pop(CONFIG_KEY)))
    try:
        weights = dequantize_int6(packed)
    except (KeyError, ValueError, TypeError, IndexError) as e:  # a scale missing or of the wrong shape
        raise CheckpointError(f"{path}: inconsistent int6 artifact ({error_reason(e)})") from None
    return config, _float_arrays(path, weights)
