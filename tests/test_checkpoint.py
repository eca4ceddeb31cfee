"""Portable .npz, step checkpoints and the int6 artifact."""

from __future__ import annotations

import lzma

import numpy as np
import pytest

from meadow_golf.model.checkpoint import (CheckpointError, load_int6_artifact, load_npz, load_torch_checkpoint,
                                    load_weights, quantize_int6, dequantize_int6, save_int6_artifact, save_npz,
                                    save_torch_checkpoint)


def weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.normal(size=(8, 5)).astype(np.float32),
            "a.gain": rng.normal(size=(5,)).astype(np.float32),
            "zero.weight": np.zeros((3, 4), np.float32)}


def test_npz_round_trip_with_config(tmp_path):
    w, cfg = weights(), {"vocab_size": 11, "num_layers": 2}
    save_npz(tmp_path / "m.npz", w, cfg)
    config, loaded = load_npz(tmp_path / "m.npz")
    assert config == cfg and set(loaded) == set(w)
    for k in w:
        np.testing.assert_array_equal(loaded[k], w[k])
    # numpy alone reads it, with the config under __config__ as a JSON string
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert "__config__" in z.files and '"vocab_size": 11' in str(z["__config__"])
    assert list(tmp_path.iterdir()) == [tmp_path / "m.npz"]  # no temporary file left behind


def test_truncated_and_foreign_files_raise_checkpoint_error(tmp_path):
    save_npz(tmp_path / "m.npz", weights(), {"v": 1})
    raw = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="cut.npz"):
        load_npz(tmp_path / "cut.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="__config__"):
        load_npz(tmp_path / "plain.npz")
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_torch_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="unknown checkpoint type"):
        load_weights(tmp_path / "m.bin")


def test_step_checkpoint_weights_load_as_numpy(tmp_path):
    import torch

    model = {k: torch.from_numpy(v) for k, v in weights().items()}
    save_torch_checkpoint(tmp_path / "step_3.pt", {"model": model, "config": {"v": 2}, "step": 3})
    config, loaded = load_weights(tmp_path / "step_3.pt")
    assert config == {"v": 2}
    np.testing.assert_array_equal(loaded["a.weight"], weights()["a.weight"])


def test_int6_quantization_error_is_bounded_per_row():
    w = weights()
    packed = quantize_int6(w)
    assert packed["a.weight::q"].dtype == np.int8 and np.abs(packed["a.weight::q"]).max() <= 31
    back = dequantize_int6(packed)
    step = np.abs(w["a.weight"]).max(axis=1, keepdims=True) / 31
    assert np.all(np.abs(back["a.weight"] - w["a.weight"]) <= 0.5 * step * 1.01 + 1e-3 * step)
    np.testing.assert_array_equal(back["zero.weight"], 0)
    np.testing.assert_allclose(back["a.gain"], w["a.gain"], rtol=1e-3)


def test_int6_artifact_round_trip(tmp_path):
    size = save_int6_artifact(tmp_path / "m.int6.lzma", weights(), {"v": 3})
    assert size == (tmp_path / "m.int6.lzma").stat().st_size
    lzma.decompress((tmp_path / "m.int6.lzma").read_bytes())  # a plain lzma stream
    config, back = load_int6_artifact(tmp_path / "m.int6.lzma")
    assert config == {"v": 3} and set(back) == set(weights())


def test_the_int6_artifact_loads_in_the_evaluators_path(tmp_path):
    """The record's compact weights: read_checkpoint takes the .lzma artifact, with its config and
    the dequantized weights (each within half a quantization step of the original values)."""
    from meadow_golf.model.checkpoint import quantize_int6, read_checkpoint, save_int6_artifact

    rng = np.random.default_rng(0)
    weights = {"a.weight": rng.normal(size=(4, 6)).astype(np.float32), "b": rng.normal(size=(3,)).astype(np.float32)}
    config = {"vocab_size": 8}
    save_int6_artifact(tmp_path / "m.int6.lzma", weights, config, tokenizer={"sha256": "ab", "vocab_size": 8})
    loaded = read_checkpoint(tmp_path / "m.int6.lzma")
    assert loaded.config == config and loaded.tokenizer == {"sha256": "ab", "vocab_size": 8}
    scale = quantize_int6(weights)["a.weight::scale"].astype(np.float32)
    assert np.all(np.abs(loaded.weights["a.weight"] - weights["a.weight"]) <= scale[:, None] / 2 + 1e-7)
    assert np.array_equal(loaded.weights["b"], weights["b"].astype(np.float16).astype(np.float32))
