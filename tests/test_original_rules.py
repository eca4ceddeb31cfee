"""The original recipe's rules that the replay fixture does not exercise, one test each.

The fixture (tests/fixtures/original_recipe) covers the hash, the Muon split and clipping, the
schedule's step rule and the EMA through 60 replayed steps (tests/test_replay_fixture.py). What
it cannot cover is checked here against the rule as the method document states it
(experiments/METHOD.md §4): the clock, the loop order of validations, the validation size, the
time-based warmdown inside a run and the bfloat16 token embedding.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from meadow_golf.data import loader as data_mod
from meadow_golf.train import train_cdm
from meadow_golf.train import flags as train_flags
from conftest import TINY_TRAIN_FLAGS
from meadow_golf.model.gpt import GPT, GPTConfig, param_groups
from meadow_golf.train.optim import clip_matrix_grad

FIXTURE = Path(__file__).parent / "fixtures" / "original_recipe"


def test_muon_takes_the_parameters_the_original_did():
    traj = json.loads((FIXTURE / "trajectory_w0.3.json").read_text())
    cfg = {k: v for k, v in traj["config"].items() if k not in ("tied_embed_init_std", "seed")}
    groups = param_groups(GPT(GPTConfig(**cfg)))
    assert [n for n, _ in groups["muon"]] == traj["muon_order"]
    assert [n for n, _ in groups["embed"]] == ["tok_emb.weight"]
    # 2-D but excluded by name, as in the original: resid_mix and skip_weights.
    scalar = [n for n, _ in groups["scalar"]]
    assert "skip_weights" in scalar and "blocks.0.resid_mix" in scalar


def test_matrix_clip_is_the_originals_rule():
    g = torch.full((3, 4), 0.5)  # Frobenius norm sqrt(12) * 0.5 = 1.732...
    clipped = clip_matrix_grad(g, 0.3)
    norm = float(np.sqrt(12) * 0.5)
    torch.testing.assert_close(clipped, g * (0.3 / (norm + 1e-8)), rtol=0, atol=1e-7)
    small = torch.full((3, 4), 0.01)  # norm 0.0346 <= 0.3: untouched, bit for bit
    assert torch.equal(clip_matrix_grad(small, 0.3), small)
    assert torch.equal(clip_matrix_grad(g, 0.0), g)  # 0 turns it off


def test_validation_takes_the_first_million_tokens_in_whole_windows(tmp_path):
    """--val_tokens 1000000 at T=1024: 976 windows, 999,424 targets, as the original's 'val_short'."""
    from meadow_golf.data.challenge_format import write_shard

    tokens = (np.arange(1_200_000) % 1000).astype(np.uint16)
    write_shard(tmp_path / "fineweb_val_000000.bin", tokens)
    args = train_cdm.build_parser().parse_args(["--data_dir", str(tmp_path)])
    assert args.val_tokens == 1_000_000
    val = data_mod.load_validation(tmp_path, args.val_tokens, vocab=1024)
    windows = data_mod.validation_windows(val, 1024)
    assert windows.shape == (976, 1025) and windows.shape[0] * 1024 == 999_424
    assert np.array_equal(windows[:, :-1].ravel(), tokens[:999_424])


def run(data_dir, ckpt, *extra):
    rc = train_cdm.main([*TINY_TRAIN_FLAGS, "--data_dir", str(data_dir), "--checkpoint_dir", str(ckpt), *extra])
    assert rc == 0
    return json.loads((ckpt / "results.json").read_text())


def slow_validation(monkeypatch, seconds: float):
    real = train_cdm.Trainer.val_bpb

    def val_bpb(self):
        time.sleep(seconds)
        return real(self)

    monkeypatch.setattr(train_cdm.Trainer, "val_bpb", val_bpb)


def test_original_clock_counts_validations_and_train_only_does_not(shakespeare_data, tmp_path, monkeypatch):
    """A budget of 1.5 s with a validation of 0.6 s every 2 steps: on the original's clock the
    validations (step 0 included) eat the budget; on --clock train_only the steps alone count."""
    slow_validation(monkeypatch, 0.6)
    common = ["--train_budget_secs", "1.5", "--steps", "9999", "--val_every", "2", "--cdm_weight", "0"]
    orig = run(shakespeare_data, tmp_path / "orig", *common)
    only = run(shakespeare_data, tmp_path / "only", *common, "--clock", "train_only")
    # Original: validations at steps 0, 2, ... each cost 0.6 s of the 1.5 s: at most 3 of them, and
    # the run stops at the first step top after 1.5 s, so it trains at most 5 steps.
    assert orig["steps"] <= 5 and orig["train_seconds"] >= 1.5
    assert orig["val_history"][0]["step"] == 0  # the step-0 validation is part of the loop
    assert orig["train_seconds"] >= sum(v["val_seconds"] for v in orig["val_history"][:-1])
    # train_only: 1.5 s of steps alone; the tiny model's steps take milliseconds.
    assert only["steps"] > 3 * orig["steps"]
    assert only["train_seconds"] < sum(v["val_seconds"] for v in only["val_history"][:-1])


def test_time_based_warmdown_in_a_run(shakespeare_data, tmp_path):
    """The lr multiplier of each logged step equals min(1, remaining / warmdown_secs) computed from
    its own budget clock (no step rule: warmdown_steps 0)."""
    res = run(shakespeare_data, tmp_path / "wd", "--train_budget_secs", "2", "--steps", "9999",
              "--warmdown_steps", "0", "--warmdown_secs", "1.5", "--log_every", "1", "--cdm_weight", "0")
    records = [json.loads(line) for line in (tmp_path / "wd" / "train_log.jsonl").read_text().splitlines()]
    mults = [r["lr_mult"] for r in records if r["event"] == "train"]
    assert mults[0] == 1.0 and min(mults) < 0.5  # the last 1.5 s of 2 s decay the LR
    assert all(a >= b for a, b in zip(mults, mults[1:]))  # monotone: the clock only moves forward
    assert res["rules"]["departures_from_original"] == [
        "warmdown_steps=0", "warmdown_secs=1.5", "val_tokens=2048", "train_budget_secs=2.0"]


def test_bf16_token_embedding(shakespeare_data, tmp_path):
    """--tok_emb_dtype bfloat16 (what auto picks on CUDA): the parameter and its Adam state are
    bfloat16, the other parameters float32; auto is float32 on the CPU."""
    assert train_cdm.tok_emb_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert train_cdm.tok_emb_dtype("auto", torch.device("cpu")) == torch.float32
    args = train_cdm.build_parser().parse_args([*TINY_TRAIN_FLAGS, "--data_dir", str(shakespeare_data),
                                                 "--checkpoint_dir", str(tmp_path / "bf"), "--steps", "2",
                                                 "--tok_emb_dtype", "bfloat16"])
    trainer = train_cdm.Trainer(args)
    try:
        trainer.run()
        emb = trainer.model.tok_emb.weight
        assert emb.dtype == torch.bfloat16
        assert all(p.dtype == torch.float32 for n, p in trainer.model.named_parameters() if n != "tok_emb.weight")
        adam = trainer.optimizers[-1]
        assert adam.state[emb]["exp_avg"].dtype == torch.bfloat16
    finally:
        trainer.dist.close()


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0", "--train_budget_secs", "10"], "EMA starts at int(0.8 * --steps)"),
    (["--steps", "-5"], "must be >= 0"),
    (["--muon_clip", "-1"], "must be >= 0"),
])
def test_rule_flags_are_checked_before_training(shakespeare_data, tmp_path, capsys, flags, message):
    rc = train_cdm.main([*TINY_TRAIN_FLAGS, "--data_dir", str(shakespeare_data),
                         "--checkpoint_dir", str(tmp_path / "x"), *flags])
    assert rc == 1 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert train_flags.ORIGINAL_RULES["muon_clip"] == 0.3
