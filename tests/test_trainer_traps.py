"""Traps a new user hit with one trainer run (issue 18): each is said at the start or the end of the
run in a `warning:` line and recorded in results.json "warnings", or named in the refusal.

- a warmdown that spans the whole run (`--steps 60` keeps the original's `--warmdown_steps 1000`:
  the LR starts at 0.06x), and --help saying how the original's 1000/9999 ratio scales (item 5);
- a short budget eaten by validation, and a run that ends after very few steps (new-user item 3);
- a truncated newest step checkpoint under --resume auto: the refusal names the older good one
  (new-user item 8).
"""

from __future__ import annotations

import json
import time

import pytest

from meadow_golf.train import flags as train_flags
from meadow_golf.train import train_cdm
from conftest import TINY_TRAIN_FLAGS


def run(data, ckpt, *extra) -> int:
    return train_cdm.main([*TINY_TRAIN_FLAGS, "--data_dir", str(data), "--checkpoint_dir", str(ckpt), *extra])


def logged(ckpt, event: str) -> list[dict]:
    rows = [json.loads(line) for line in (ckpt / "train_log.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("event") == event]


def test_whole_run_warmdown_is_said_at_the_start_and_recorded(shakespeare_data, tmp_path, capsys):
    ckpt = tmp_path / "short"
    assert run(shakespeare_data, ckpt, "--steps", "6", "--log_every", "1") == 0  # --warmdown_steps 1000 kept
    out = capsys.readouterr().out
    warnings = json.loads((ckpt / "results.json").read_text())["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("--warmdown_steps 1000 >= --steps 6")
    # The LR the schedule actually used at the first step, read from the log: 6 / 1000.
    first_lr = logged(ckpt, "train")[0]["lr_mult"]
    assert first_lr == pytest.approx(6 / 1000)
    assert f"starting at {first_lr:.3g}x" in warnings[0]
    # round(6 * 1000 / 9999) = 1: the original's share at this length.
    assert "--warmdown_steps 1" in warnings[0]
    lines = [line for line in out.splitlines() if line.startswith("warning:")]
    assert lines == [f"warning: {warnings[0]}"]
    # Said at the start: before the first step's line.
    assert out.index("warning:") < out.index("step:1/6")


def test_scaled_warmdown_gives_no_warning(shakespeare_data, tmp_path, capsys):
    ckpt = tmp_path / "scaled"
    assert run(shakespeare_data, ckpt, "--steps", "6", "--warmdown_steps", "1") == 0
    assert json.loads((ckpt / "results.json").read_text())["warnings"] == []
    assert "warning:" not in capsys.readouterr().out


def test_budget_warmdown_longer_than_the_budget_is_warned():
    args = train_flags.build_parser().parse_args(["--data_dir", "x", "--train_budget_secs", "60", "--steps", "0"])
    (text,) = train_flags.flag_warnings(args)
    # 60 s of budget under the original's 80 s time warmdown: at most 60 / 80 = 0.75x from the start;
    # the original's 80 of 540 s at 60 s is 8.88889 s.
    assert text.startswith("--warmdown_secs 80 >= --train_budget_secs 60") and "0.75x" in text
    assert "--warmdown_secs 8.88889" in text


def test_help_says_how_the_original_warmdown_scales():
    text = " ".join(train_flags.build_parser().format_help().split())
    assert "The original's 1000 is 10% of its --steps 9999" in text
    assert "round(steps * 1000 / 9999)" in text and "budget * 80 / 540" in text


def test_budget_eaten_by_validation_is_warned_and_recorded(shakespeare_data, tmp_path, monkeypatch, capsys):
    """Each validation made to take 0.4 s: with --val_every 1 and a 2 s budget on the original clock,
    the validations take most of the budget and the run ends after a few steps."""
    slow = train_cdm.Trainer.val_bpb

    def slow_val(self):
        time.sleep(0.4)
        return slow(self)

    monkeypatch.setattr(train_cdm.Trainer, "val_bpb", slow_val)
    ckpt = tmp_path / "eaten"
    assert run(shakespeare_data, ckpt, "--steps", "0", "--train_budget_secs", "2", "--warmdown_secs", "0.2",
               "--ema_decay", "0", "--val_every", "1") == 0
    results = json.loads((ckpt / "results.json").read_text())
    val_secs = sum(v["val_seconds"] for v in results["val_history"][:-1])  # the loop's validations
    assert results["steps"] < 10 and val_secs >= 1.0
    eaten = [w for w in results["warnings"] if w.startswith("validation took")]
    few = [w for w in results["warnings"] if w.startswith("the budget of 2 s ended the run after only")]
    assert len(eaten) == 1 and len(few) == 1
    assert f"after only {results['steps']} steps" in few[0]
    out = capsys.readouterr().out
    assert f"warning: {eaten[0]}" in out and f"warning: {few[0]}" in out


def test_truncated_newest_checkpoint_under_resume_auto_names_the_older_good_one(shakespeare_data, tmp_path, capsys):
    ckpt = tmp_path / "run"
    assert run(shakespeare_data, ckpt, "--steps", "4", "--save_every", "1", "--warmdown_steps", "1") == 0
    newest = ckpt / "step_3.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    capsys.readouterr()
    assert run(shakespeare_data, ckpt, "--steps", "6", "--save_every", "1", "--warmdown_steps", "1",
               "--resume", "auto") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert str(newest) in err[0] and f"--resume {ckpt / 'step_2.pt'}" in err[0]
    # The named checkpoint is a good resume point.
    assert run(shakespeare_data, ckpt, "--steps", "6", "--save_every", "1", "--warmdown_steps", "1",
               "--resume", str(ckpt / "step_2.pt")) == 0
    assert json.loads((ckpt / "results.json").read_text())["steps"] == 6
