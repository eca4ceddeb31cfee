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

The original record's checkpoints (OpenAI Parameter Golf PR 1255, `train_cdm.py`) are read too,
by read_checkpoint / load_weights, for every backend:
- `.npz`: `np.savez` of its raw `state_dict()` (bf16 expanded to float32), no config;
- `.pt`: `{"step", "model": state_dict, "ema"}`; like the original evaluator, the state dict may
  also sit under "state_dict" or "raw_model", or be the whole file; `module.` (DDP) and
  `_orig_mod.` (torch.compile) prefixes are stripped; bf16 tensors become float32.
Its parameter names differ from ours in five places (ORIGINAL_RENAMES); every other name, and
every layout, is the same, and its state dict holds no buffers (the RoPE tables are
non-persistent). Such a file carries no config: original_config infers it from the shapes. The
one thing the shapes cannot show is which blocks use XSA (it has no parameters), so it comes
from the caller (--xsa_last_n N, or --original_arch 5L|11L naming one of the record's two sizes).
"""

from __future__ import annotations

import io
import json
import lzma
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.model.config import GPTConfig, param_shapes

CONFIG_KEY = "__config__"
# The tokenizer the weights were trained with ({"path", "sha256", "vocab_size"} as JSON), next to
# the config in a .npz and an artifact (a step .pt holds it under "tokenizer"). Files written
# before it existed, and the original's, have none: the evaluators then accept them with a note.
TOKENIZER_KEY = "__tokenizer__"
METADATA_KEYS = (CONFIG_KEY, TOKENIZER_KEY)
ARTIFACT_LIMIT_BYTES = 16_000_000
INT6_MAX = 31


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, truncated or inconsistent."""


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_npz(path, weights: dict[str, np.ndarray], config: dict, tokenizer: dict | None = None) -> None:
    reserved = [k for k in METADATA_KEYS if k in weights]
    if reserved:
        raise ValueError(f"{reserved[0]} is reserved for the checkpoint's metadata")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    arrays[CONFIG_KEY] = np.array(json.dumps(config, sort_keys=True))
    if tokenizer is not None:
        arrays[TOKENIZER_KEY] = np.array(json.dumps(tokenizer, sort_keys=True))
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
    config, weights, _ = load_npz_with_tokenizer(path)
    return config, weights


def _tokenizer_dict(path: Path, text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        tokenizer = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{path}: {TOKENIZER_KEY} is not valid JSON ({error_reason(e)})") from None
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("sha256"), str):
        raise CheckpointError(f"{path}: {TOKENIZER_KEY} is not a JSON object with a sha256")
    return tokenizer


def load_npz_with_tokenizer(path) -> tuple[dict, dict[str, np.ndarray], dict | None]:
    """(config, weights, recorded tokenizer identity or None) from a portable .npz."""
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
            tokenizer_text = str(z[TOKENIZER_KEY]) if TOKENIZER_KEY in z.files else None
            arrays = {k: z[k] for k in z.files if k not in METADATA_KEYS}
    except CheckpointError:
        raise
    except Exception as e:  # zipfile, zlib, numpy's .npy parser, MemoryError for a damaged shape, ...
        raise CheckpointError(f"{path}: unreadable or truncated .npz ({error_reason(e)})") from None
    return _config_dict(path, config_text), _float_arrays(path, arrays), _tokenizer_dict(path, tokenizer_text)


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


def _torch_payload(path: Path):
    """torch.load with weights_only (no arbitrary code from the file); any failure is a CheckpointError."""
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_pickle_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's zip reader and unpickler raise many types for a damaged file
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({_torch_load_reason(e)})") from None


def _is_step_payload(payload) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("model"), dict) \
        and isinstance(payload.get("config"), dict)


def load_torch_checkpoint(path) -> dict:
    """A step checkpoint's payload, unpickled with weights_only (no arbitrary code from the file)."""
    path = Path(path)
    _require_file(path)
    payload = _torch_payload(path)
    if not _is_step_payload(payload):
        raise CheckpointError(f"{path}: not a meadow-golf step checkpoint (no model/config)")
    return payload


def _step_weights(path: Path, payload: dict) -> dict[str, np.ndarray]:
    import torch

    bad = [k for k, v in payload["model"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: model entry {bad[0]!r} is not a tensor")
    try:
        return {k: v.detach().float().cpu().numpy() for k, v in payload["model"].items()}
    except Exception as e:  # e.g. a complex or quantized tensor from a damaged file
        raise CheckpointError(f"{path}: model weights cannot be read as float32 ({error_reason(e)})") from None


def load_weights(path, *, xsa_last_n: int | None = None,
                 original_arch: str | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(config, float32 numpy weights under the project's names) from a .npz or a .pt, ours or
    the original record's (see read_checkpoint for the two flags)."""
    loaded = read_checkpoint(path, xsa_last_n=xsa_last_n, original_arch=original_arch)
    return loaded.config, loaded.weights


# ----------------------------------------------------------------------------- the original's checkpoints

# The original's parameter names that differ from ours, by their part after "blocks.<i>.".
ORIGINAL_RENAMES = {
    "attn.c_q.weight": "attn.q.weight",
    "attn.c_k.weight": "attn.k.weight",
    "attn.c_v.weight": "attn.v.weight",
    "mlp.fc.weight": "mlp.up.weight",
    "mlp.proj.weight": "mlp.down.weight",
}
_PROJECT_TO_ORIGINAL = {ours: theirs for theirs, ours in ORIGINAL_RENAMES.items()}
_BLOCK_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")
# Where the original evaluator looked for the state dict inside a .pt, in its order.
ORIGINAL_STATE_KEYS = ("model", "state_dict", "raw_model")
# The record's two model sizes: what the shapes must show, and the XSA depth they ran with.
ORIGINAL_ARCHS = {
    "5L": {"num_layers": 5, "model_dim": 256, "xsa_last_n": 2},
    "11L": {"num_layers": 11, "model_dim": 512, "xsa_last_n": 4},
}
# What the original GPTv2 fixes in code and no shape shows (train_cdm.py's module constants and
# its always-on components). qk_gain_init only sets the initial q_gain, so it does not matter here.
ORIGINAL_FIXED = {"smear_gate": True, "unet_skips": True, "layer_scale": True, "resid_mix": True,
                  "qk_norm": True, "rope_base": 10000.0, "qk_gain_init": 1.5, "logit_softcap": 30.0}


def check_arch_flags(xsa_last_n: int | None, original_arch: str | None) -> None:
    """The two flags on their own, before any file is read (ValueError naming the flag)."""
    if original_arch is not None and original_arch not in ORIGINAL_ARCHS:
        raise ValueError(f"--original_arch must be one of {', '.join(ORIGINAL_ARCHS)}, got {original_arch!r}")
    if xsa_last_n is not None and xsa_last_n < 0:
        raise ValueError(f"--xsa_last_n must be >= 0, got {xsa_last_n}")
    if xsa_last_n is not None and original_arch is not None \
            and xsa_last_n != ORIGINAL_ARCHS[original_arch]["xsa_last_n"]:
        raise ValueError(f"--xsa_last_n {xsa_last_n} contradicts --original_arch {original_arch} "
                         f"(xsa_last_n {ORIGINAL_ARCHS[original_arch]['xsa_last_n']})")


def project_name(name: str) -> str:
    """Our name for one of the original's parameter names (ours and shared names map to themselves)."""
    m = _BLOCK_NAME.match(name)
    if m and m[2] in ORIGINAL_RENAMES:
        return f"blocks.{m[1]}.{ORIGINAL_RENAMES[m[2]]}"
    return name


def original_name(name: str) -> str:
    """The original's name for one of our parameter names."""
    m = _BLOCK_NAME.match(name)
    if m and m[2] in _PROJECT_TO_ORIGINAL:
        return f"blocks.{m[1]}.{_PROJECT_TO_ORIGINAL[m[2]]}"
    return name


def strip_prefixes(name: str) -> str:
    """The name without the wrappers' prefixes, in the original evaluator's order: DDP's `module.`,
    then torch.compile's `_orig_mod.`."""
    if name.startswith("module."):
        name = name[len("module."):]
    if name.startswith("_orig_mod."):
        name = name[len("_orig_mod."):]
    return name


def _shape(a: np.ndarray) -> str:
    return "(" + ", ".join(str(n) for n in a) + ("," if len(a) == 1 else "") + ")"


def _first_and_more(names: list[str]) -> str:
    return repr(names[0]) + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")


def original_config(path, weights: dict[str, np.ndarray], xsa_last_n: int) -> dict:
    """The model config of a config-less state dict (our names), inferred from its shapes.

    vocab_size and model_dim come from tok_emb.weight, num_layers from the highest block index,
    num_heads from blocks.0.attn.q_gain, num_kv_heads from blocks.0.attn.k.weight, mlp_mult from
    blocks.0.mlp.up.weight, bigram_buckets and bigram_dim from bigram.embed.weight; xsa_last_n is
    given (read_checkpoint checks that it fits). Refuses (CheckpointError) a tensor whose shape
    these cannot come from.
    """
    def need(name: str, ndim: int) -> tuple[int, ...]:
        if name not in weights:
            raise CheckpointError(f"{path}: missing tensor {original_name(name)!r} (needed to infer the model config)")
        shape = tuple(int(n) for n in np.shape(weights[name]))
        if len(shape) != ndim or min(shape, default=1) < 1:
            raise CheckpointError(f"{path}: tensor {original_name(name)!r} has shape {_shape(shape)}, "
                                  f"not a {ndim}-D shape of positive sizes")
        return shape

    V, d = need("tok_emb.weight", 2)
    blocks = {int(m[1]) for name in weights if (m := _BLOCK_NAME.match(name))}
    if not blocks:
        raise CheckpointError(f"{path}: no blocks.<i>.* tensors: not a GPT state dict")
    (H,) = need("blocks.0.attn.q_gain", 1)
    if d % H or (d // H) % 2:
        raise CheckpointError(f"{path}: blocks.0.attn.q_gain gives {H} heads, which do not split "
                              f"model_dim {d} (tok_emb.weight) into heads of even size")
    head_dim = d // H
    kv_dim, _ = need("blocks.0.attn.k.weight", 2)
    num_kv_heads = kv_dim // head_dim
    if kv_dim % head_dim or num_kv_heads == 0 or H % num_kv_heads:
        raise CheckpointError(f"{path}: {original_name('blocks.0.attn.k.weight')!r} has {kv_dim} rows, not a "
                              f"number of KV heads of size {head_dim} that divides the {H} query heads")
    hidden, _ = need("blocks.0.mlp.up.weight", 2)
    if hidden % d:
        raise CheckpointError(f"{path}: {original_name('blocks.0.mlp.up.weight')!r} has {hidden} rows, "
                              f"not a multiple of model_dim {d}")
    buckets, bigram_dim = need("bigram.embed.weight", 2)
    return {"vocab_size": V, "num_layers": max(blocks) + 1, "model_dim": d, "num_heads": H,
            "num_kv_heads": num_kv_heads, "mlp_mult": hidden // d, "bigram_dim": bigram_dim,
            "bigram_buckets": buckets, "xsa_last_n": xsa_last_n, **ORIGINAL_FIXED}


def check_original_tensors(path, weights: dict[str, np.ndarray], config: dict) -> None:
    """Exactly the tensors of `config`'s original architecture, each of its shape, or one
    CheckpointError naming the first tensor (under the original's name) that is missing,
    unexpected or mis-shaped. The expected tensors are config.param_shapes's (the model's own table)."""
    try:
        expected = param_shapes(GPTConfig.from_dict(config))
    except ValueError as e:  # the shapes gave a config the model cannot be built from
        raise CheckpointError(f"{path}: {e}") from None
    missing = [original_name(n) for n in expected if n not in weights]
    unexpected = sorted(original_name(n) for n in weights if n not in expected)
    if missing or unexpected:
        parts = []
        if unexpected:
            parts.append(f"unexpected tensor {_first_and_more(unexpected)}")
        if missing:
            parts.append(f"missing tensor {_first_and_more(missing)}")
        raise CheckpointError(f"{path}: " + "; ".join(parts) + " for the original architecture")
    for name, shape in expected.items():
        found = tuple(np.shape(weights[name]))
        if found != shape:
            arch = ", ".join(f"{k} {config[k]}" for k in ("vocab_size", "num_layers", "model_dim", "num_heads",
                                                          "num_kv_heads", "mlp_mult", "bigram_dim"))
            raise CheckpointError(f"{path}: tensor {original_name(name)!r} has shape {_shape(found)}, expected "
                                  f"{_shape(shape)} for the architecture inferred from the other shapes ({arch})")


def check_config_against_flags(path, config: dict, xsa_last_n: int | None, original_arch: str | None) -> None:
    """A checkpoint that carries its config: the flags may only repeat it."""
    if xsa_last_n is not None and "xsa_last_n" in config and config["xsa_last_n"] != xsa_last_n:
        raise CheckpointError(f"{path}: --xsa_last_n {xsa_last_n} contradicts the checkpoint's own config "
                              f"(xsa_last_n {config['xsa_last_n']})")
    if original_arch is not None:
        for key, value in ORIGINAL_ARCHS[original_arch].items():
            if key in config and config[key] != value:
                raise CheckpointError(f"{path}: --original_arch {original_arch} ({key} {value}) contradicts "
                                      f"the checkpoint's own config ({key} {config[key]})")


def _original_state(path: Path, state: dict) -> dict[str, np.ndarray]:
    """A raw state dict (torch tensors or numpy arrays) -> float32 arrays under our names."""
    out: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: state dict key {key!r} is not a string")
        if not isinstance(value, np.ndarray):
            import torch

            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"{path}: state dict entry {key!r} is not a tensor")
            try:  # bf16 (the original's tok_emb.weight) and every other float type become float32
                value = value.detach().float().cpu().numpy()
            except Exception as e:  # a complex or quantized tensor from a damaged file
                raise CheckpointError(f"{path}: entry {key!r} cannot be read as float32 ({error_reason(e)})") from None
        name = project_name(strip_prefixes(key))
        if name in out:
            raise CheckpointError(f"{path}: entries {source[name]!r} and {key!r} are both the parameter {name!r}")
        source[name] = key
        out[name] = value
    return _float_arrays(path, out)


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What read_checkpoint found: the config, the weights under our names, and where they came from."""

    config: dict
    weights: dict[str, np.ndarray]
    source: str  # "meadow-golf" / "meadow-golf int6 artifact" (carry their config) or "original" (config from the shapes)
    xsa_from: str | None = None  # original only: the flag that gave xsa_last_n
    tokenizer: dict | None = None  # the recorded tokenizer identity (None: not recorded)

    def describe(self) -> dict:
        """For a report's JSON."""
        if self.source in ("meadow-golf", "meadow-golf int6 artifact"):
            return {"format": self.source, "config_from": "the checkpoint", "tokenizer": self.tokenizer}
        return {"format": "original (PR 1255 train_cdm.py state dict)",
                "config_from": f"the tensor shapes; xsa_last_n from {self.xsa_from}",
                "renamed": {theirs: ours for theirs, ours in ORIGINAL_RENAMES.items()}, "tokenizer": None}


def _original_state_in(path: Path, payload) -> dict | None:
    """The state dict inside an original .pt (where the original evaluator looked), or None."""
    if not isinstance(payload, dict):
        return None
    for key in ORIGINAL_STATE_KEYS:
        if isinstance(payload.get(key), dict):
            return payload[key]
    import torch

    if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload  # a bare state dict
    return None


def read_checkpoint(path, *, xsa_last_n: int | None = None, original_arch: str | None = None) -> LoadedCheckpoint:
    """Our .npz / step_*.pt (config stored in the file), or the original record's .npz / .pt.

    A file that carries its config is taken as it is; the flags are then only checked against it.
    A config-less file is the original's raw state dict: names mapped (ORIGINAL_RENAMES, prefixes
    stripped; our names are accepted too), config inferred from the shapes, xsa_last_n from
    --xsa_last_n or --original_arch (one of them is required), every tensor checked.
    """
    path = Path(path)
    check_arch_flags(xsa_last_n, original_arch)
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: an MLX step checkpoint, which this backend does not read; "
                              "use the run's final_model.npz (both backends read it)")
    if path.suffix == ".lzma":
        # The int6 artifact (the record's compact weights): dequantized, so its scores differ from
        # those of the float32 weights it was made from by the quantization alone.
        config, weights, tokenizer = read_int6_artifact(path)
        check_config_against_flags(path, config, xsa_last_n, original_arch)
        return LoadedCheckpoint(config, weights, "meadow-golf int6 artifact", tokenizer=tokenizer)
    if path.suffix not in (".npz", ".pt"):
        raise CheckpointError(f"{path}: unknown checkpoint type (expected .npz, .pt or an int6 .lzma artifact)")
    _require_file(path)
    state = None
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                has_config = CONFIG_KEY in z.files
                if not has_config:
                    state = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile, zlib, numpy's .npy parser, MemoryError for a damaged shape, ...
            raise CheckpointError(f"{path}: unreadable or truncated .npz ({error_reason(e)})") from None
        if has_config:
            config, weights, tokenizer = load_npz_with_tokenizer(path)
            check_config_against_flags(path, config, xsa_last_n, original_arch)
            return LoadedCheckpoint(config, weights, "meadow-golf", tokenizer=tokenizer)
        missing_config = f"no {CONFIG_KEY} entry"
    else:
        payload = _torch_payload(path)
        if _is_step_payload(payload):
            weights = _step_weights(path, payload)
            check_config_against_flags(path, payload["config"], xsa_last_n, original_arch)
            tokenizer = payload.get("tokenizer")
            if tokenizer is not None and not (isinstance(tokenizer, dict) and isinstance(tokenizer.get("sha256"), str)):
                raise CheckpointError(f"{path}: its tokenizer record is not a dict with a sha256")
            return LoadedCheckpoint(payload["config"], weights, "meadow-golf", tokenizer=tokenizer)
        state = _original_state_in(path, payload)
        if state is None:
            raise CheckpointError(f"{path}: neither a meadow-golf step checkpoint (model + config) nor an "
                                  f"original one (a state dict under {'/'.join(ORIGINAL_STATE_KEYS)})")
        missing_config = "no model config"

    if xsa_last_n is None and original_arch is None:
        raise CheckpointError(
            f"{path}: {missing_config}, so it is read as the original's raw state dict, whose shapes give "
            "everything but the XSA layers: pass --xsa_last_n N or --original_arch 5L|11L")
    weights = _original_state(path, state)
    if original_arch is not None:
        xsa_last_n, xsa_from = ORIGINAL_ARCHS[original_arch]["xsa_last_n"], f"--original_arch {original_arch}"
    else:
        xsa_from = "--xsa_last_n"
    config = original_config(path, weights, xsa_last_n)
    if config["num_layers"] // 2 == 0 and "skip_weights" in weights and weights["skip_weights"].size == 0:
        # One layer: the original keeps an empty (0, model_dim) skip table, ours has none.
        del weights["skip_weights"]
    if original_arch is not None:
        for key in ("num_layers", "model_dim"):
            named = ORIGINAL_ARCHS[original_arch][key]
            if config[key] != named:
                raise CheckpointError(f"{path}: --original_arch {original_arch} has {key} {named}, "
                                      f"the checkpoint's shapes give {config[key]}")
    if xsa_last_n > config["num_layers"]:
        raise CheckpointError(f"{path}: xsa_last_n {xsa_last_n} (from {xsa_from}) exceeds the model's "
                              f"{config['num_layers']} layers")
    check_original_tensors(path, weights, config)
    return LoadedCheckpoint(config, weights, "original", xsa_from)


# ----------------------------------------------------------------------------- int6 artifact


def quantize_int6(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-row symmetric int6 for 2-D matrices (scale = rowmax/31), float16 for everything else."""
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float32)
        if w.ndim == 2:
            # A row whose scale is 0 in float16 (all zero, or so small that the float16 scale
            # underflows) gets scale 1: its values round to 0 either way, without a 0/0.
            scale = (np.abs(w).max(axis=1) / INT6_MAX).astype(np.float16)
            scale = np.where(scale > 0, scale, np.float16(1.0))
            q = np.clip(np.rint(w / scale.astype(np.float32)[:, None]), -INT6_MAX, INT6_MAX)
            out[f"{name}::q"] = q.astype(np.int8)
            out[f"{name}::scale"] = scale
        else:
            out[name] = w.astype(np.float16)
    return out


def dequantize_int6(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for key, arr in packed.items():
        if key.endswith("::scale") or key in METADATA_KEYS:
            continue
        if key.endswith("::q"):
            name = key[: -len("::q")]
            scale = packed[f"{name}::scale"].astype(np.float32)
            weights[name] = arr.astype(np.float32) * scale[:, None]
        else:
            weights[key] = arr.astype(np.float32)
    return weights


def save_int6_artifact(path, weights: dict[str, np.ndarray], config: dict, tokenizer: dict | None = None) -> int:
    """Write the compressed artifact; return its size in bytes."""
    packed = quantize_int6(weights)
    packed[CONFIG_KEY] = np.array(json.dumps(config, sort_keys=True))
    if tokenizer is not None:
        packed[TOKENIZER_KEY] = np.array(json.dumps(tokenizer, sort_keys=True))
    blob = lzma.compress(_npz_bytes(packed), preset=9 | lzma.PRESET_EXTREME)
    atomic_write_bytes(path, blob)
    return len(blob)


def load_int6_artifact(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(config, dequantized float32 weights) of an int6+lzma artifact."""
    config, weights, _ = read_int6_artifact(path)
    return config, weights


def read_int6_artifact(path) -> tuple[dict, dict[str, np.ndarray], dict | None]:
    """(config, dequantized float32 weights, tokenizer record or None) of an int6+lzma artifact."""
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
    tokenizer_text = packed.pop(TOKENIZER_KEY, None)
    tokenizer = None
    if tokenizer_text is not None:
        try:
            tokenizer = json.loads(str(tokenizer_text))
        except ValueError as e:
            raise CheckpointError(f"{path}: unreadable tokenizer record ({error_reason(e)})") from None
    try:
        weights = dequantize_int6(packed)
    except (KeyError, ValueError, TypeError, IndexError) as e:  # a scale missing or of the wrong shape
        raise CheckpointError(f"{path}: inconsistent int6 artifact ({error_reason(e)})") from None
    return config, _float_arrays(path, weights), tokenizer
