"""The joint trainer: objective wiring, seeding, saves, resume and a real short run."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from meadow_golf.model import noise as noise_mod
from meadow_golf.train import train_cdm
from meadow_golf.train import flags as train_flags
from meadow_golf.train import schedule as train_schedule
from meadow_golf.model.checkpoint import load_npz, load_torch_checkpoint
from meadow_golf.model.gpt import GPT, GPTConfig, load_state_numpy
from meadow_golf.train.optim import newton_schulz_orthogonalize
from meadow_golf.eval.torch_backend import ar_val_bpb, load_model

FIXTURE = Path(__file__).parent / "fixtures" / "original_recipe"
TINY = ["--num_layers", "2", "--model_dim", "32", "--num_heads", "4", "--num_kv_heads", "2",
        "--bigram_dim", "16", "--xsa_last_n", "1", "--seq_len", "32", "--batch_tokens", "256",
        "--train_budget_secs", "0", "--val_tokens", "2048", "--val_batch_size", "16",
        "--device", "cpu", "--log_every", "5"]


def run_trainer(data_dir, ckpt_dir, *extra) -> dict:
    rc = train_cdm.main([*TINY, "--data_dir", str(data_dir), "--checkpoint_dir", str(ckpt_dir), *extra])
    assert rc == 0
    return json.loads((ckpt_dir / "results.json").read_text())


class CountingModel(torch.nn.Module):
    """Wraps a GPT and records the is_causal flag of every forward."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, idx, is_causal=True):
        self.calls.append(is_causal)
        return self.model(idx, is_causal=is_causal)


@pytest.mark.parametrize("weight, expected", [(0.0, [True]), (0.3, [True, False]), (1.0, [True, False])])
def test_cdm_weight_zero_skips_the_denoising_pass(weight, expected):
    torch.manual_seed(0)
    model = CountingModel(GPT(GPTConfig(vocab_size=64, num_layers=2, model_dim=32, bigram_dim=16)))
    x = torch.randint(0, 64, (2, 16))
    y = torch.randint(0, 64, (2, 16))
    gen = torch.Generator().manual_seed(1)
    ar, cdm = train_cdm.train_step(model, x, y, cdm_weight=weight, vocab_size=64, gen=gen,
                                   autocast=torch.autocast("cpu", enabled=False))
    assert model.calls == expected
    assert (cdm is None) == (weight == 0)
    # The AR loss it returns is the causal cross-entropy of the same model on (x, y), recomputed
    # here with the weights unchanged (train_step only accumulates gradients).
    with torch.no_grad():
        logits = model.model(x, is_causal=True)
    assert float(ar) == pytest.approx(float(torch.nn.functional.cross_entropy(
        logits.reshape(-1, 64), y.reshape(-1))), rel=1e-6)


def test_retrodiction_adds_one_causal_pass_on_the_reversed_window():
    torch.manual_seed(0)
    inner = GPT(GPTConfig(vocab_size=64, num_layers=2, model_dim=32, bigram_dim=16))
    seen = []

    class Recorder(CountingModel):
        def forward(self, idx, is_causal=True):
            seen.append(idx.clone())
            return super().forward(idx, is_causal)

    model = Recorder(inner)
    chunk = torch.randint(0, 64, (2, 17))
    x, y = chunk[:, :-1], chunk[:, 1:]
    train_cdm.train_step(model, x, y, cdm_weight=0.0, vocab_size=64, gen=torch.Generator().manual_seed(1),
                         autocast=torch.autocast("cpu", enabled=False), retro_alpha=0.5)
    assert model.calls == [True, True]
    assert torch.equal(seen[1], chunk.flip(1)[:, :-1])


def test_gradient_is_ar_plus_weighted_cdm():
    """One call with weight w gives exactly grad(AR) + w * grad(CDM) computed separately."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=64, num_layers=2, model_dim=32, bigram_dim=16)
    model = GPT(cfg)
    for p in model.parameters():  # leave zero-init matrices non-zero so every path has gradient
        p.data.add_(0.02 * torch.randn_like(p))
    x, y = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    off = torch.autocast("cpu", enabled=False)

    def grads(weight):
        model.zero_grad()
        train_cdm.train_step(model, x, y, cdm_weight=weight, vocab_size=64,
                             gen=torch.Generator().manual_seed(5), autocast=off)
        return [p.grad.clone() for p in model.parameters()]

    g_ar, g_one, g_half = grads(0.0), grads(1.0), grads(0.5)
    for a, one, half in zip(g_ar, g_one, g_half):
        cdm = one - a
        torch.testing.assert_close(half, a + 0.5 * cdm, rtol=1e-4, atol=1e-7)
    assert any(float((one - a).abs().max()) > 0 for a, one in zip(g_ar, g_one))


def test_corruption_rate_and_determinism():
    x = torch.randint(0, 100, (64, 128))
    rates = []
    for seed in range(20):
        noisy, mask, n_masked = noise_mod.corrupt_torch(x, 100, torch.Generator().manual_seed(seed))
        noisy2, mask2, _ = noise_mod.corrupt_torch(x, 100, torch.Generator().manual_seed(seed))
        assert torch.equal(noisy, noisy2) and torch.equal(mask, mask2)
        assert int(n_masked) == int(mask.sum())
        assert torch.equal(noisy[~mask], x[~mask])
        rates.append(mask.float().mean().item())
    assert 0.13 < min(rates) and max(rates) < 0.52
    assert max(rates) - min(rates) > 0.05  # one rate per step, drawn afresh


def test_newton_schulz_is_near_orthogonal():
    torch.manual_seed(0)
    for shape in [(64, 32), (32, 64), (48, 48)]:
        g = torch.randn(*shape)
        x = newton_schulz_orthogonalize(g)
        s = torch.linalg.svdvals(x)
        assert s.min() > 0.6 and s.max() < 1.25, (shape, s.min(), s.max())
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        exact = u @ vh
        cos = (x * exact).sum() / (x.norm() * exact.norm())
        assert cos > 0.95


def test_original_lr_schedule_matches_the_recorded_multipliers():
    """The fixture's 60 lr_mul values, recorded from the original's schedule (--steps 60,
    warmdown 12, no budget), and the time rule by hand."""
    traj = json.loads((FIXTURE / "trajectory_w0.3.json").read_text())
    ours = [train_schedule.original_lr_multiplier(k, traj["K"], traj["warmdown_steps"]) for k in range(traj["K"])]
    assert ours == [s["lr_mul"] for s in traj["steps"]]
    # The original recipe: --steps 9999, warmdown 1000 (never reached in 540 s), 80 s time rule.
    assert train_schedule.original_lr_multiplier(5000, 9999, 1000, remaining_secs=100.0) == 1.0
    assert train_schedule.original_lr_multiplier(5000, 9999, 1000, remaining_secs=20.0) == 0.25
    assert train_schedule.original_lr_multiplier(9000, 9999, 1000, remaining_secs=70.0) == 0.875
    assert train_schedule.original_lr_multiplier(9499, 9999, 1000, remaining_secs=70.0) == 0.5  # step rule wins
    assert train_schedule.original_lr_multiplier(100, 9999, 1000, remaining_secs=-1.0) == 1.0  # overshoot: rule off


def test_ema_timing_is_the_originals():
    """Created after the update of step int(0.8 * steps), averaged in after every later one."""
    args = train_cdm.build_parser().parse_args(["--data_dir", "x", "--steps", "60"])
    assert train_schedule.ema_start_step(args) == 48
    assert [k for k in range(60) if train_schedule.ema_due(args, k)] == list(range(48, 60))
    args = train_cdm.build_parser().parse_args(["--data_dir", "x"])  # the recipe's nominal 9999 steps
    assert train_schedule.ema_start_step(args) == 7999
    assert train_flags.departures(args) == []
    args = train_cdm.build_parser().parse_args(["--data_dir", "x", "--ema_decay", "0", "--clock", "train_only"])
    assert train_flags.departures(args) == ["ema_decay=0.0", "clock=train_only"]


def test_short_run_lowers_loss_and_writes_everything(shakespeare_data, tmp_path):
    ckpt = tmp_path / "run"
    # The original's rules scaled to 60 steps: warmdown over the last 12 (its 1000 of 9999 would
    # keep the LR below 6% of its peak for the whole run), EMA from step 48.
    res = run_trainer(shakespeare_data, ckpt, "--steps", "60", "--val_every", "30", "--save_every", "30",
                      "--cdm_weight", "0.3", "--warmdown_steps", "12")
    assert res["steps"] == 60 and res["tokens_seen"] == res["steps"] * 256  # steps * --batch_tokens
    assert res["final_val_bpb"] == res["val_history"][-1]["val_bpb"]  # last evaluation, not best
    assert res["best_val_bpb"] == min(v["val_bpb"] for v in res["val_history"])  # the original's report
    # Validations at the top of steps 0 and 30 (raw weights), the final one on the EMA weights.
    assert [(v["step"], v["ema"]) for v in res["val_history"]] == [(0, False), (30, False), (60, True)]
    assert res["ema"]["used"] and res["ema"]["start_step"] == 48 and res["ema"]["steps"] == 12
    assert res["rules"]["departures_from_original"] == [
        "warmdown_steps=12", "val_tokens=2048", "steps=60", "train_budget_secs=0.0"]
    records = [json.loads(line) for line in (ckpt / "train_log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    assert train[0]["step"] == "1/60" and "cdm_loss" in train[0]
    assert train[-1]["ar_loss"] < train[0]["ar_loss"] - 1.0
    assert res["val_history"][-1]["val_bpb"] < res["val_history"][0]["val_bpb"]
    text = (ckpt / "train.log").read_text()
    assert text.startswith("config:") and "tok_s:" in text and "val_bpb:" in text and "eta_s:" in text
    # The step saves hold the training state of their step (--save_every 30), not just a file.
    assert load_torch_checkpoint(ckpt / "step_30.pt")["step"] == 30
    assert load_torch_checkpoint(ckpt / "step_final.pt")["step"] == 60
    assert res["artifact_bytes"] == (ckpt / "final_model.int6.lzma").stat().st_size

    # The portable .npz carries its config and reloads into an identical model.
    config, weights = load_npz(ckpt / "final_model.npz")
    assert config == res["config"]["model"]
    from_npz, _ = load_model(ckpt / "final_model.npz", torch.device("cpu"))
    from_pt, _ = load_model(ckpt / "step_final.pt", torch.device("cpu"))
    idx = torch.randint(0, config["vocab_size"], (2, 32))
    for causal in (True, False):
        assert torch.equal(from_npz(idx, is_causal=causal), from_pt(idx, is_causal=causal))
    fresh = GPT(GPTConfig.from_dict(config))
    load_state_numpy(fresh, weights)
    assert torch.equal(fresh(idx), from_npz(idx))
    # The .npz weights are the final model's, tensor for tensor, bit for bit.
    final_state = {k: v.detach().numpy() for k, v in from_pt.state_dict().items()}
    assert set(weights) == set(final_state)
    assert all(np.array_equal(weights[k], final_state[k]) for k in weights)
    # final_val_bpb recomputed from the saved model with the evaluator's own function on the
    # trainer's validation tokens (--val_tokens 2048 -> 2049 tokens, --val_batch_size 16): the
    # same float32 forwards on the same windows in the same batches, so equal bit for bit; it
    # ties the reported number to the weights that were saved (the EMA ones), not to a model
    # that only lived in the trainer's memory.
    from meadow_golf.data.challenge_format import load_byte_tables, load_tokens
    meta = json.loads((shakespeare_data / "meta.json").read_text())
    recomputed = ar_val_bpb(from_npz, load_tokens(shakespeare_data, "val", limit=2049), 32, 16,
                            torch.device("cpu"), load_byte_tables(shakespeare_data / meta["tokenizer"]))
    assert recomputed["val_bpb"] == res["final_val_bpb"]


def test_same_seed_same_weights_and_resume_is_exact(shakespeare_data, tmp_path):
    common = ["--steps", "12", "--save_every", "6", "--val_every", "0", "--cdm_weight", "0.5"]
    a = run_trainer(shakespeare_data, tmp_path / "a", *common)
    b = run_trainer(shakespeare_data, tmp_path / "b", *common)
    wa = load_torch_checkpoint(tmp_path / "a" / "step_final.pt")["model"]
    wb = load_torch_checkpoint(tmp_path / "b" / "step_final.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["final_val_bpb"] == b["final_val_bpb"]

    # Resume from step 6 of run a, in a new folder: bitwise the same final weights.
    c_dir = tmp_path / "c"
    c_dir.mkdir()
    (c_dir / "step_6.pt").write_bytes((tmp_path / "a" / "step_6.pt").read_bytes())
    run_trainer(shakespeare_data, c_dir, *common, "--resume", "auto")
    wc = load_torch_checkpoint(c_dir / "step_final.pt")["model"]
    assert all(torch.equal(wa[k], wc[k]) for k in wa)

    other = run_trainer(shakespeare_data, tmp_path / "d", *common[:-2], "--cdm_weight", "0.5", "--seed", "7")
    wd = load_torch_checkpoint(tmp_path / "d" / "step_final.pt")["model"]
    assert not all(torch.equal(wa[k], wd[k]) for k in wa)
    assert other["steps"] == 12


@pytest.mark.parametrize("extra, message", [
    (["--seq_len", "30"], "multiple of --seq_len"),
    (["--steps", "0"], "budget"),
    (["--cdm_weight", "-1", "--steps", "2"], "cdm_weight"),
    (["--vocab_size", "16", "--steps", "2"], "larger than the model vocab"),
])
def test_bad_flags_give_one_error_line(shakespeare_data, tmp_path, capsys, extra, message):
    ckpt = tmp_path / "bad"
    rc = train_cdm.main([*TINY, "--data_dir", str(shakespeare_data), "--checkpoint_dir", str(ckpt), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (ckpt / "results.json").exists()


def test_missing_data_folder(tmp_path, capsys):
    rc = train_cdm.main([*TINY, "--steps", "2", "--data_dir", str(tmp_path / "nope"),
                         "--tokenizer_path", str(tmp_path / "x.model"), "--checkpoint_dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 1 and "error:" in err


def test_checkpoint_config_mismatch_is_refused(shakespeare_data, tmp_path, capsys):
    run_trainer(shakespeare_data, tmp_path / "a", "--steps", "4", "--save_every", "2", "--val_every", "0")
    rc = train_cdm.main([*TINY, "--model_dim", "64", "--steps", "4", "--data_dir", str(shakespeare_data),
                         "--checkpoint_dir", str(tmp_path / "a"), "--resume", "auto"])
    err = capsys.readouterr().err
    assert rc == 1 and "does not match the flags" in err


def test_val_bpb_uses_spec_bytes(shakespeare_data, tmp_path):
    """val_bpb == val_loss * tokens / (ln2 * bytes), with bytes recounted from the byte tables."""
    res = run_trainer(shakespeare_data, tmp_path / "v", "--steps", "2", "--val_every", "0")
    from meadow_golf.data.challenge_format import load_byte_tables, load_tokens

    meta = json.loads((shakespeare_data / "meta.json").read_text())
    tables = load_byte_tables(shakespeare_data / meta["tokenizer"])
    toks = load_tokens(shakespeare_data, "val", limit=2049)
    n = (len(toks) - 1) // 32 * 32
    expected_bytes = int(tables.stream_bytes(toks[: n + 1]).sum())
    assert res["val_bytes"] == expected_bytes and res["val_tokens"] == n
    assert res["final_val_bpb"] == pytest.approx(res["final_val_loss"] * n / (math.log(2) * expected_bytes),
                                                 rel=1e-12)


def train_records(ckpt_dir: Path) -> list[dict]:
    lines = (ckpt_dir / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "train"]


def test_log_every_secs_adds_lines_between_the_step_lines(shakespeare_data, tmp_path, monkeypatch):
    # Issue 13 item 9: with a sparse --log_every, a line still comes every --log_every_secs of the run's clock.
    assert train_cdm.build_parser().parse_args(["--data_dir", "x"]).log_every_secs == 30.0
    slow_step = train_cdm.Trainer.train_step

    def train_step(self, x, y):  # a step slow enough that the interval spans a few steps
        time.sleep(0.04)
        return slow_step(self, x, y)

    monkeypatch.setattr(train_cdm.Trainer, "train_step", train_step)
    interval = 0.25
    run_trainer(shakespeare_data, tmp_path / "run", "--steps", "30", "--log_every", "1000", "--log_every_secs",
                str(interval), "--val_every", "0", "--save_every", "0", "--cdm_weight", "0")
    records = train_records(tmp_path / "run")
    steps = [int(r["step"].split("/")[0]) for r in records]
    assert steps[0] == 1 and steps[-1] == 30 and len(steps) > 3, steps  # by step alone: 1 and 30 only
    times = [r["train_time"] for r in records]
    for step, before, after in zip(steps[1:-1], times, times[1:]):
        # a time-triggered line comes no sooner than the interval, and at most about a step later
        assert interval <= after - before < interval + 1.0, (step, before, after)


@pytest.mark.parametrize("val_every", [0, 2])
def test_eta_includes_the_final_validation(shakespeare_data, tmp_path, val_every):
    # Issue 13 item 9: eta_s = the rest of the training at the pace so far + the final validation's estimate.
    res = run_trainer(shakespeare_data, tmp_path / "run", "--steps", "6", "--log_every", "1", "--val_every",
                      str(val_every), "--save_every", "0", "--cdm_weight", "0", "--ema_decay", "0")
    records = train_records(tmp_path / "run")
    assert len(records) == 6
    for r in records:
        step = int(r["step"].split("/")[0])
        frac = step / 6
        assert r["eta_val_s"] > 0
        assert r["eta_s"] == pytest.approx(r["train_time"] * (1 - frac) / frac + r["eta_val_s"], rel=1e-9)
        if val_every:  # the mean of the validations timed before this line (tops of steps 0, 2, 4)
            timed = [v["val_seconds"] for v in res["val_history"][:-1] if v["step"] < step]
            assert r["eta_val_s"] == pytest.approx(sum(timed) / len(timed), rel=1e-9)
    if not val_every:  # one batch timed once, scaled to all windows: the same estimate on every line
        assert len({r["eta_val_s"] for r in records}) == 1
    assert records[-1]["eta_s"] == pytest.approx(records[-1]["eta_val_s"])  # at the cap only the validation is left
