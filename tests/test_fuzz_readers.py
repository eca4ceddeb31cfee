"""Fuzzing the file readers: a damaged shard or checkpoint ends in the documented error
(ShardError / CheckpointError) with a one-line message naming the file, never in another
exception, a crash or a hang.

Each reader gets one valid file of its format, damaged in four ways by a seeded RNG: the empty
file, truncations at many offsets, a few overwritten bytes (a third anywhere, a third in the
first bytes, where the headers are, a third in the last bytes, where zip keeps its directory),
and random garbage. An empty or truncated file must always be refused. Overwritten bytes or
garbage may still load (a changed token id is still a valid shard; torch's zip reader does not
check CRCs), but then the reader must return normally.

The module's teardown prints one line with the number of cases tried per reader.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from collections import Counter

import numpy as np
import pytest
import torch

from meadow_golf.data.challenge_format import (ShardError, TokenStream, load_tokens, read_shard, read_shard_header,
                                          write_shard)
from meadow_golf.model.checkpoint import (CheckpointError, load_int6_artifact, load_npz, load_torch_checkpoint, load_weights,
                                    save_int6_artifact, save_npz, save_torch_checkpoint)

SEED = 20240520
N_TRUNCATIONS, N_FLIPS, N_GARBAGE = 24, 30, 12  # + the empty file: 67 cases per reader
HEAD_BYTES, TAIL_BYTES = 64, 256  # the head and tail regions of the flips
MAX_SECONDS_PER_READER = 30  # a watchdog against hangs; the whole module runs in a few seconds

CASES_TRIED: dict[str, Counter] = {}


@pytest.fixture(scope="module", autouse=True)
def report_case_counts(request):
    yield
    if not CASES_TRIED:
        return
    total = sum(sum(c.values()) for c in CASES_TRIED.values())
    loaded = sum(c["loaded"] for c in CASES_TRIED.values())
    per_reader = ", ".join(f"{name} {sum(c.values())}" for name, c in CASES_TRIED.items())
    line = (f"fuzz_readers: {total} damaged-file cases over {len(CASES_TRIED)} readers "
            f"({total - loaded} refused with the documented error, {loaded} still loaded): {per_reader}")
    # Past pytest's output capture, so the count shows in every run (quotable from the log).
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{line}", flush=True)


# ----------------------------------------------------------------------------- damaged bytes


def damaged_versions(raw: bytes, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """(kind, bytes) cases from one valid file: kind is empty, truncated, flipped or garbage."""
    n = len(raw)
    cuts = {1, 2, 4, 8, n - 1} | {int(c) for c in np.linspace(1, n - 1, N_TRUNCATIONS // 2)}
    while len(cuts) < N_TRUNCATIONS:
        cuts.add(int(rng.integers(1, n)))
    cases = [("empty", b"")] + [("truncated", raw[:cut]) for cut in sorted(cuts)]
    # Formats keep their headers at the start and their directories at the end (zip's central
    # directory, xz's index), so two thirds of the flips land there, one or two bytes at a time
    # (a single damaged field, rather than several where the first one found hides the others).
    regions = [(0, n, 8), (0, min(HEAD_BYTES, n), 2), (max(0, n - TAIL_BYTES), n, 2)]
    for i in range(N_FLIPS):
        damaged = bytearray(raw)
        low, high, most = regions[i % 3]
        for pos in rng.integers(low, high, size=int(rng.integers(1, most + 1))):
            damaged[pos] = (damaged[pos] + int(rng.integers(1, 256))) % 256  # always a different byte
        cases.append(("flipped", bytes(damaged)))
    for _ in range(N_GARBAGE):
        cases.append(("garbage", rng.bytes(int(rng.integers(1, 2 * n)))))
    return cases


@contextlib.contextmanager
def watchdog(seconds: int):
    """Raise TimeoutError in the test if the block runs longer than `seconds` (Unix only)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"a reader took longer than {seconds} s (hang?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- valid files


def shard_file(folder):
    path = folder / "fineweb_train_000000.bin"
    write_shard(path, np.random.default_rng(1).integers(0, 1024, size=700))
    return path


def weights():
    rng = np.random.default_rng(2)
    return {"blocks.0.attn.c_q.weight": rng.normal(size=(16, 8)).astype(np.float32),
            "blocks.0.attn.q_gain": rng.normal(size=(4,)).astype(np.float32),
            "bigram.scale": np.float32(0.05)}


def npz_file(folder):
    path = folder / "final_model.npz"
    save_npz(path, weights(), {"vocab_size": 64, "num_layers": 1})
    return path


def int6_file(folder):
    path = folder / "final_model.int6.lzma"
    save_int6_artifact(path, weights(), {"vocab_size": 64, "num_layers": 1})
    return path


def pt_file(folder):
    """A step checkpoint shaped like train_cdm.py's: weights, optimizer state, every RNG state."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    layer(torch.randn(2, 8)).sum().backward()
    optimizer.step()
    payload = {"step": 3, "elapsed": 1.5, "tokens_seen": 768, "config": {"vocab_size": 64, "num_layers": 1},
               "model": {k: v.detach().clone() for k, v in layer.state_dict().items()},
               "optimizers": [optimizer.state_dict()],
               "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                       "torch": torch.get_rng_state(), "gen": torch.Generator().get_state(), "cuda": None},
               "ema": None}
    path = folder / "step_3.pt"
    save_torch_checkpoint(path, payload)
    return path


def safetensors_file(folder):
    mx = pytest.importorskip("mlx.core")
    from meadow_golf.eval import mlx_backend

    path = folder / "step_3.safetensors"
    mlx_backend.save_step_checkpoint(
        path, model_weights={k: mx.array(v) for k, v in weights().items()},
        optimizer_state={"step": mx.array(3), "state": {"m": mx.zeros((4,))}},
        state={"config": {"vocab_size": 64, "num_layers": 1}, "step": 3}, cdm_key=mx.array([1, 2], dtype=mx.uint32))
    return path


def load_mlx_step(path):
    from meadow_golf.eval import mlx_backend

    return mlx_backend.load_step_checkpoint(path)


def read_every_token(path):
    return int(np.asarray(read_shard(path), dtype=np.int64).sum())


def stream_twice_around(path):
    stream = TokenStream(path.parent, "train")
    return stream.take(2 * sum(stream.sizes) + 3)


# (reader name, function of the damaged file's path, maker of the valid file, documented error)
READERS = [
    ("read_shard_header", read_shard_header, shard_file, ShardError),
    ("read_shard", read_every_token, shard_file, ShardError),
    ("load_tokens", lambda path: load_tokens(path.parent, "train"), shard_file, ShardError),
    ("TokenStream", stream_twice_around, shard_file, ShardError),
    ("load_npz", load_npz, npz_file, CheckpointError),
    ("load_weights(.npz)", load_weights, npz_file, CheckpointError),
    ("load_torch_checkpoint", load_torch_checkpoint, pt_file, CheckpointError),
    ("load_weights(.pt)", load_weights, pt_file, CheckpointError),
    ("load_int6_artifact", load_int6_artifact, int6_file, CheckpointError),
    ("mlx load_step_checkpoint", load_mlx_step, safetensors_file, CheckpointError),
]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on garbage it then refuses
@pytest.mark.parametrize("name, read, make_valid, documented", READERS, ids=[r[0] for r in READERS])
def test_damaged_files_end_in_the_documented_error(tmp_path, name, read, make_valid, documented):
    valid = make_valid(tmp_path)
    read(valid)  # the undamaged file loads
    rng = np.random.default_rng([SEED, [r[0] for r in READERS].index(name)])
    counts = CASES_TRIED.setdefault(name, Counter())
    with watchdog(MAX_SECONDS_PER_READER):
        for i, (kind, data) in enumerate(damaged_versions(valid.read_bytes(), rng)):
            # A folder per case: a memory-mapped shard of an earlier case must not be overwritten.
            folder = tmp_path / f"case_{i:03d}"
            folder.mkdir()
            path = folder / valid.name
            path.write_bytes(data)
            t0 = time.perf_counter()
            try:
                read(path)
            except documented as e:
                message = str(e)
                assert str(path) in message and "\n" not in message, (name, kind, message)
                counts[f"refused {kind}"] += 1
            except Exception as e:  # the failure this test exists to find
                pytest.fail(f"{name}: {kind} file (case {i}, {len(data)} bytes) raised "
                            f"{type(e).__name__}: {e}, not {documented.__name__}")
            else:
                assert kind in ("flipped", "garbage"), f"{name}: a {kind} file ({len(data)} bytes) was accepted"
                counts["loaded"] += 1
            assert time.perf_counter() - t0 < 5, f"{name}: case {i} ({kind}) took too long"
    assert sum(counts.values()) == 1 + N_TRUNCATIONS + N_FLIPS + N_GARBAGE
