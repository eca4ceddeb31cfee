"""Preemption safety of the trainer: SIGTERM/SIGINT stop after a checkpoint and exit 0, SIGKILL at
random steps followed by `--resume auto` ends bitwise where an uninterrupted run ends, and a
non-finite loss stops the run with the last good checkpoint kept.

The orchestrator-level soak (run_6.sh + eval_6.sh under random kills) is in test_orchestrators.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from meadow_golf.train import train_cdm
from meadow_golf.model.checkpoint import load_npz, load_torch_checkpoint
from conftest import TINY_TRAIN_FLAGS
from kill_harness import run_with_kills
from meadow_golf.train.run_folder import newest_step_checkpoint

# The entry scripts the recipes run (the code: scripts/meadow_golf/train_cdm*.py).
EXP = Path(__file__).resolve().parents[1] / "experiments" / "2026-04-09_matched_ablation"
SCRIPT = str(EXP / "train_cdm.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def flags(data_dir, ckpt_dir, steps: int, *extra) -> list[str]:
    return [*TINY_TRAIN_FLAGS, "--data_dir", str(data_dir), "--checkpoint_dir", str(ckpt_dir),
            "--steps", str(steps), "--cdm_weight", "0.3", "--log_every", "1", *extra]


def weights(ckpt_dir: Path) -> dict:
    return load_npz(ckpt_dir / "final_model.npz")[1]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def newest_step(ckpt_dir: Path) -> int:
    path = newest_step_checkpoint(ckpt_dir, ".pt")
    return int(path.stem.split("_")[1]) if path else 0


def train_steps_logged(ckpt_dir: Path) -> int:
    log = ckpt_dir / "train_log.jsonl"
    if not log.is_file():
        return 0
    return sum(1 for line in log.read_text().splitlines() if '"event": "train"' in line)


@pytest.fixture(scope="module")
def reference(shakespeare_data, tmp_path_factory):
    """An uninterrupted 40-step run that saves every step."""
    out = tmp_path_factory.mktemp("reference")
    assert train_cdm.main(flags(shakespeare_data, out, 40, "--save_every", "1")) == 0
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_checkpoints_exits_0_and_resume_matches(shakespeare_data, tmp_path, reference, sig):
    ckpt = tmp_path / "run"
    cmd = [sys.executable, SCRIPT, *flags(shakespeare_data, ckpt, 40, "--save_every", "1")]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while train_steps_logged(ckpt) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stopped = [line for line in out.splitlines() if line.startswith("stopped:")]
    if not stopped:
        pytest.skip("the run ended before the signal arrived (machine too fast for this timing)")
    m = re.match(rf"stopped:{sig.name} step:(\d+) checkpoint:(\S+) resume_with: (.+)$", stopped[0])
    assert m, stopped[0]
    step = int(m.group(1))
    assert Path(m.group(2)).is_file() and step < 40 and newest_step(ckpt) == step
    assert not (ckpt / "results.json").exists()
    resume = shlex.split(m.group(3))
    assert resume[-2:] == ["--resume", "auto"]
    done = subprocess.run(resume, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert same_weights(weights(ckpt), weights(reference))
    assert json.loads((ckpt / "results.json").read_text())["steps"] == 40


def test_sigkill_at_random_steps_then_resume_is_bitwise_identical(shakespeare_data, tmp_path, reference):
    """torch: killed 4 times at random points (mid-step or mid-save), resumed each time with
    --resume auto, the final weights, EMA-free val_bpb and step count equal the uninterrupted run's."""
    rng = random.Random(2024)
    ckpt = tmp_path / "killed"
    cmd = [sys.executable, SCRIPT, *flags(shakespeare_data, ckpt, 40, "--save_every", "1", "--resume", "auto")]
    targets = sorted(rng.sample(range(2, 36), 4))  # kill once the newest checkpoint reaches these steps

    def ready(i: int) -> bool:
        return newest_step(ckpt) >= targets[i]

    report = run_with_kills(cmd, ENV, kills=4, rng=rng, ready=ready, delay=(0.0, 0.03), timeout=400)
    assert report.returncode == 0, report.outputs[-1][-2000:]
    print(f"preemption: launches:{report.launches} kills_survived:{report.kills}")
    assert report.kills >= 3  # the kills really hit running trainers
    resumed = (ckpt / "train.log").read_text().count("resumed_from:")
    assert resumed >= 1
    res, ref = (json.loads((d / "results.json").read_text()) for d in (ckpt, reference))
    assert (res["steps"], res["tokens_seen"], res["final_val_bpb"]) == (ref["steps"], ref["tokens_seen"], ref["final_val_bpb"])
    assert same_weights(weights(ckpt), weights(reference))
    a = load_torch_checkpoint(ckpt / "step_final.pt")
    b = load_torch_checkpoint(reference / "step_final.pt")
    for key in ("model",):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert a["stream"] == b["stream"]


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(shakespeare_data, tmp_path, monkeypatch, capsys):
    real_step = train_cdm.train_step
    calls = [0]

    def poisoned(model, x, y, **kw):
        calls[0] += 1
        if calls[0] == 5:  # step 5's forward sees a NaN weight
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
        return real_step(model, x, y, **kw)

    monkeypatch.setattr(train_cdm, "train_step", poisoned)
    ckpt = tmp_path / "nan"
    rc = train_cdm.main(flags(shakespeare_data, ckpt, 12, "--save_every", "2"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "non-finite loss or weights at step 5" in err[0] and str(ckpt / "step_4.pt") in err[0]
    assert sorted(p.name for p in ckpt.glob("step_*.pt")) == ["step_2.pt", "step_4.pt"]
    assert not (ckpt / "results.json").exists() and not (ckpt / "final_model.npz").exists()
    good = load_torch_checkpoint(ckpt / "step_4.pt")["model"]
    assert all(torch.isfinite(t).all() for t in good.values())


@pytest.mark.mlx
def test_mlx_sigkill_then_resume_is_bitwise_identical(shakespeare_data, tmp_path):
    """The MLX trainer on the CPU under the same harness: killed twice, resumed, bitwise equal."""
    pytest.importorskip("mlx.core")
    from meadow_golf.train import train_cdm_mlx

    script = str(EXP / "train_cdm_mlx.py")
    common = flags(shakespeare_data, tmp_path / "unused", 16, "--save_every", "1")
    common = common[:common.index("--checkpoint_dir")] + common[common.index("--checkpoint_dir") + 2:]
    ref_dir, ckpt = tmp_path / "ref", tmp_path / "killed"
    assert train_cdm_mlx.main([*common, "--checkpoint_dir", str(ref_dir)]) == 0
    rng = random.Random(5)
    targets = sorted(rng.sample(range(2, 14), 2))

    def ready(i: int) -> bool:
        path = newest_step_checkpoint(ckpt, ".safetensors")
        return path is not None and int(path.stem.split("_")[1]) >= targets[i]

    cmd = [sys.executable, script, *common, "--checkpoint_dir", str(ckpt), "--resume", "auto"]
    report = run_with_kills(cmd, ENV, kills=2, rng=rng, ready=ready, delay=(0.0, 0.05), timeout=400)
    assert report.returncode == 0, report.outputs[-1][-2000:]
    print(f"preemption(mlx): launches:{report.launches} kills_survived:{report.kills}")
    assert report.kills >= 1
    assert same_weights(weights(ckpt), weights(ref_dir))
    res, ref = (json.loads((d / "results.json").read_text()) for d in (ckpt, ref_dir))
    assert (res["steps"], res["final_val_bpb"]) == (ref["steps"], ref["final_val_bpb"])
