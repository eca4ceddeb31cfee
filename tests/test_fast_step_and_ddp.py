"""Speed paths against the plain path, and data parallelism against one process.

- the fused joint step (one batched forward for all passes) gives the plain step's losses and
  gradients; the fused forward gives each row the logits of its own mode;
- the denoising noise does not depend on the number of ranks;
- `torchrun --nproc_per_node 2` with gloo on CPU ends with the weights of a single-process run on
  the same global batch, and every rank holds the same weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from meadow_golf.model import noise as noise_mod
from meadow_golf.train import train_cdm
from meadow_golf.model.checkpoint import load_npz
from conftest import TINY_TRAIN_FLAGS
from meadow_golf.model.gpt import GPT, GPTConfig

# The entry script torchrun launches by path, as the recipes do.
EXP_DIR = Path(__file__).resolve().parents[1] / "experiments" / "2026-04-09_matched_ablation"
CFG = GPTConfig(vocab_size=64, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, bigram_dim=16,
                xsa_last_n=1)
NO_AUTOCAST = torch.autocast("cpu", enabled=False)


def fresh_model(seed=0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(CFG)
    # Zero-initialized projections make a fresh model's gradients partly trivial; perturb them.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def grads_after_step(fused: bool, weight: float, retro: float):
    model = fresh_model()
    x = torch.randint(0, 64, (3, 24), generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 64, (3, 24), generator=torch.Generator().manual_seed(6))
    ar, cdm = train_cdm.train_step(model, x, y, cdm_weight=weight, vocab_size=64,
                                   gen=torch.Generator().manual_seed(9), autocast=NO_AUTOCAST,
                                   retro_alpha=retro, fused=fused)
    return ar, cdm, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("weight, retro", [(0.0, 0.0), (0.3, 0.0), (1.0, 0.0), (0.3, 0.5), (0.0, 0.5)])
def test_fused_step_equals_the_plain_step(weight, retro):
    ar_p, cdm_p, g_p = grads_after_step(False, weight, retro)
    ar_f, cdm_f, g_f = grads_after_step(True, weight, retro)
    # float32 rounding of differently batched matmuls: relative 1e-6 on losses, 1e-5 on gradients.
    torch.testing.assert_close(ar_f, ar_p, rtol=1e-6, atol=1e-6)
    assert (cdm_f is None) == (cdm_p is None) == (weight == 0)
    if cdm_p is not None:
        torch.testing.assert_close(cdm_f, cdm_p, rtol=1e-6, atol=1e-6)
    for name in g_p:
        torch.testing.assert_close(g_f[name], g_p[name], rtol=1e-5, atol=1e-7, msg=name)


def test_fused_forward_gives_each_row_its_own_mode():
    model = fresh_model().eval()
    a = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    b = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fused = model(torch.cat([a, b]), is_causal=False, causal_rows=2)
        torch.testing.assert_close(fused[:2], model(a, is_causal=True), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(fused[2:], model(b, is_causal=False), rtol=1e-6, atol=1e-6)
        # causal_rows covering the whole batch is the causal pass.
        torch.testing.assert_close(model(b, is_causal=False, causal_rows=3), model(b, is_causal=True))


def test_noise_does_not_depend_on_the_number_of_ranks():
    x = torch.randint(0, 50, (8, 20), generator=torch.Generator().manual_seed(0))
    one, mask_one, n_one = noise_mod.corrupt_torch(x, 50, torch.Generator().manual_seed(3))
    for world in (2, 4):
        rows = 8 // world
        parts = [noise_mod.corrupt_torch(x[r * rows:(r + 1) * rows], 50, torch.Generator().manual_seed(3), r, world)
                 for r in range(world)]
        assert torch.equal(torch.cat([p[0] for p in parts]), one)
        assert torch.equal(torch.cat([p[1] for p in parts]), mask_one)
        assert all(int(p[2]) == int(n_one) for p in parts)  # every rank knows the global count


def test_compiled_step_equals_the_plain_step():
    """--compile (inductor on CPU) computes the plain path's losses and gradients."""
    pytest.importorskip("torch._inductor")
    plain = grads_after_step(False, 0.3, 0.0)
    model = fresh_model()
    compiled = torch.compile(model)
    x = torch.randint(0, 64, (3, 24), generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 64, (3, 24), generator=torch.Generator().manual_seed(6))
    try:
        ar, cdm = train_cdm.train_step(compiled, x, y, cdm_weight=0.3, vocab_size=64,
                                       gen=torch.Generator().manual_seed(9), autocast=NO_AUTOCAST)
    except Exception as e:  # no working C++ toolchain for inductor on this machine
        if "compiler" in str(e).lower() or "InductorError" in type(e).__name__:
            pytest.skip(f"torch.compile unavailable here: {type(e).__name__}")
        raise
    torch.testing.assert_close(ar, plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cdm, plain[1], rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[2][name], rtol=1e-4, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------- 2 processes (gloo)


def launch(data_dir, ckpt_dir, nproc: int, *extra) -> dict:
    flags = [*TINY_TRAIN_FLAGS, "--data_dir", str(data_dir), "--checkpoint_dir", str(ckpt_dir),
             "--steps", "4", "--batch_tokens", "512", "--cdm_weight", "0.3", "--log_every", "1", *extra]
    script = str(EXP_DIR / "train_cdm.py")
    if nproc == 1:
        cmd = [sys.executable, script, *flags]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               script, *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads((ckpt_dir / "results.json").read_text())


@pytest.mark.parametrize("extra", [[], ["--fuse_passes", "--retro_alpha", "0.5"]], ids=["plain", "fused_retro"])
def test_two_gloo_processes_equal_one_process(shakespeare_data, tmp_path, extra):
    one = launch(shakespeare_data, tmp_path / "one", 1, *extra)
    two = launch(shakespeare_data, tmp_path / "two", 2, *extra)
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert two["rank_weight_spread"] == 0.0  # all ranks hold bitwise identical weights
    assert two["steps"] == one["steps"] == 4 and two["tokens_seen"] == one["tokens_seen"]
    _, w1 = load_npz(tmp_path / "one" / "final_model.npz")
    _, w2 = load_npz(tmp_path / "two" / "final_model.npz")
    assert w1.keys() == w2.keys()
    # Two half-batch means averaged vs one full-batch mean: float32 rounding only, which Muon's
    # orthogonalization and 4 steps of Adam carry into the weights at the 1e-5 level.
    worst = max(float(np.max(np.abs(w1[k] - w2[k]))) for k in w1)
    assert worst < 2e-4, worst
    assert two["final_val_bpb"] == pytest.approx(one["final_val_bpb"], rel=1e-4)
    # The logged losses are the global-batch losses (the mean of the ranks' parts): step for step equal.
    losses = [[(r["ar_loss"], r.get("cdm_loss")) for r in map(json.loads, (tmp_path / d / "train_log.jsonl").open())
               if r["event"] == "train"] for d in ("one", "two")]
    assert len(losses[0]) == len(losses[1]) == 4
    for a, b in zip(*losses):
        assert b == pytest.approx(a, rel=1e-5)
    # Rank 0 alone logs: one header line in the text log.
    assert (tmp_path / "two" / "train.log").read_text().count("config:") == 1


def test_batched_muon_equals_the_per_matrix_loop():
    """Muon(batched=True) (the CUDA path: one stacked Newton-Schulz per shape) = the plain loop."""
    from meadow_golf.train.optim import build_optimizers
    from meadow_golf.model.gpt import param_groups

    results = []
    for batched in (False, True):
        model = fresh_model()
        opts = build_optimizers(param_groups(model))
        opts[0].batched = batched
        for seed in range(3):
            x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(seed))
            train_cdm.TorchStep(model, model, opts, torch.Generator().manual_seed(1), NO_AUTOCAST,
                                cdm_weight=0.3)(x[:, :-1], x[:, 1:])
        results.append({n: p.detach().clone() for n, p in model.named_parameters()})
    for name in results[0]:
        torch.testing.assert_close(results[1][name], results[0][name], rtol=1e-5, atol=1e-6, msg=name)


def test_memo_scorer_gives_the_same_numbers_with_10_of_17_forwards():
    """eval_cf's MemoScorer: identical per-decoder results, 1 + 3 + 2*3 forwards per batch, not 17."""
    from meadow_golf.eval import cf
    from meadow_golf.eval import eval_cf
    from meadow_golf.eval.toy_scorers import MixingScorer

    class Counting:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __call__(self, inputs, is_causal, targets):
            self.calls += 1
            return self.inner(inputs, is_causal, targets)

    windows = np.random.default_rng(0).integers(0, 11, (6, 17))
    nbytes = np.ones((6, 16), dtype=np.int64)
    settings = cf.CFSettings(vocab_size=11, stride=2, rounds=2, n_random=3, seed=42)
    counting = Counting(MixingScorer(11))
    memo = eval_cf.score_decoders(counting, windows, nbytes, ["ar", "cf_published", "cf_valid"], batch_size=3,
                                  settings=settings)
    assert counting.calls == 2 * 10  # two batches
    for name in ("ar", "cf_published", "cf_valid"):
        direct = cf.decode_nll(MixingScorer(11), windows, name, settings)
        assert memo[name]["nll_sum"] == pytest.approx(float(direct.sum()), rel=1e-12)


def test_compile_warm_up_leaves_training_bit_for_bit_unchanged(shakespeare_data, tmp_path, monkeypatch):
    """The --compile warm-up (--clock train_only: outside the budget) runs a forward+backward and
    then restores everything: a run with it ends with the weights of a run without it. Under the
    original's clock there is no warm-up (compilation counts in the budget). Compilation itself is
    replaced by the identity here (its numerics are checked in test_compiled_step_equals_the_plain_step)."""
    monkeypatch.setattr(torch, "compile", lambda module, **_: module)
    common = [*TINY_TRAIN_FLAGS, "--data_dir", str(shakespeare_data), "--steps", "3", "--cdm_weight", "0.3",
              "--clock", "train_only"]
    assert train_cdm.main([*common, "--checkpoint_dir", str(tmp_path / "plain")]) == 0
    assert train_cdm.main([*common, "--checkpoint_dir", str(tmp_path / "warm"), "--compile"]) == 0
    _, a = load_npz(tmp_path / "plain" / "final_model.npz")
    _, b = load_npz(tmp_path / "warm" / "final_model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    events = [json.loads(r)["event"] for r in (tmp_path / "warm" / "train_log.jsonl").open()]
    assert "warmup" in events and "warmup" not in [json.loads(r)["event"] for r in (tmp_path / "plain" / "train_log.jsonl").open()]
    original_clock = [a for a in common if a not in ("--clock", "train_only")]
    assert train_cdm.main([*original_clock, "--checkpoint_dir", str(tmp_path / "orig"), "--compile"]) == 0
    assert "warmup" not in [json.loads(r)["event"] for r in (tmp_path / "orig" / "train_log.jsonl").open()]


def test_benchmark_writes_records_ratios_and_the_stated_flop_count(tmp_path):
    """benchmark.py end to end at a tiny size (the numbers are timings; only their form is checked),
    and its FLOP formula against a hand count."""
    from meadow_golf.tools import benchmark

    out = tmp_path / "bench.json"
    assert benchmark.main(["--scales", "5L", "--vocab_size", "256", "--seq_len", "32", "--batch_tokens", "64",
                           "--steps", "1", "--warmup", "0", "--cf_windows", "2", "--cf_seq_len", "16",
                           "--cf_scales", "5L", "--device", "cpu", "--json_out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["complete"]
    steps = [r for r in result["records"] if r["kind"] == "train_step"]
    assert [r["mode"] for r in steps] == ["ar", "joint", "joint_fused"]
    assert all(r["losses_finite"] and "error" not in r for r in steps)
    # Throughput is the timed tokens over the recorded time: --batch_tokens 64 x the timed steps.
    for r in steps:
        assert r["seconds"] > 0 and r["timed_steps"] == 1
        assert r["tokens_per_s"] == pytest.approx(64 * r["timed_steps"] / r["seconds"], rel=1e-12)
    assert {r["mode"] for r in result["ratios"]} == {"joint", "joint_fused"}
    ar = steps[0]
    assert [r["ratio_to_ar"] for r in result["ratios"] if r["mode"] == "joint"][0] == \
        pytest.approx(steps[1]["tokens_per_s"] / ar["tokens_per_s"])
    cf_rec = [r for r in result["records"] if r["kind"] == "cf_eval"][0]
    assert cf_rec["windows"] == 2 and "not a code length" in cf_rec["note"]

    # Hand count for 5L d256 (8 heads, 4 KV heads: kv dim 128), mlp 3, bigram 128, V 256, T 32.
    d, L, T, V = 256, 5, 32, 256
    n_matmul = L * (2 * d * d + 2 * d * 128 + 2 * 3 * d * d) + 128 * d
    causal = 6 * (n_matmul + V * d) + 6 * L * T * d
    cfg = GPTConfig(vocab_size=V, **benchmark.SCALES["5L"])
    assert benchmark.flops_per_token(cfg, T, joint=False) == causal
    assert benchmark.flops_per_token(cfg, T, joint=True) == causal + 6 * (n_matmul + V * d) + 12 * L * T * d


def test_benchmark_refuses_bad_input_with_one_line(capsys):
    from meadow_golf.tools import benchmark

    assert benchmark.main(["--scales", "7L"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown scales")


def test_reference_flop_formula_matches_an_independent_count():
    """benchmark.py's plain-GPT reference: its stated FLOPs per token, against torch's FlopCounterMode
    on one forward+backward at a tiny size. FlopCounterMode counts attention in full (no causal
    halving), so the convention's causal 6*L*T*d is 12*L*T*d there. SDPA runs its math backend so
    its matmuls are counted (the CPU flash kernel has no registered FLOP formula)."""
    from meadow_golf.tools import benchmark
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    B, T = 2, 16
    cfg = GPTConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=4, mlp_mult=3)
    model, _ = benchmark.make_reference(cfg, T, torch.device("cpu"))
    idx = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=torch.Generator().manual_seed(0))
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        F.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten()).backward()
    d, L = cfg.model_dim, cfg.num_layers
    stated = benchmark.reference_flops_per_token(cfg, T)
    assert stated == 6 * (L * (4 * d * d + 6 * d * d) + cfg.vocab_size * d) + 6 * L * T * d
    assert counter.get_total_flops() == B * T * (stated + 6 * L * T * d)


def test_benchmark_times_the_reference_interleaved(tmp_path):
    """--reference adds one vs_reference record whose ratios are those of its two sides (form only)."""
    from meadow_golf.tools import benchmark

    out = tmp_path / "bench.json"
    assert benchmark.main(["--scales", "5L", "--modes", "ar", "--vocab_size", "256", "--seq_len", "32",
                           "--batch_tokens", "64", "--steps", "3", "--warmup", "1", "--cf_windows", "0",
                           "--device", "cpu", "--reference", "--json_out", str(out)]) == 0
    rec = [r for r in json.loads(out.read_text())["records"] if r["kind"] == "vs_reference"]
    assert len(rec) == 1
    o, f = rec[0]["ours"], rec[0]["reference"]
    assert o["loss_finite"] and f["loss_finite"] and o["params"] > 0 and f["params"] > 0
    assert rec[0]["flops_ratio"] == pytest.approx(o["achieved_tflops"] / f["achieved_tflops"])
    assert rec[0]["tokens_ratio"] == pytest.approx(o["tokens_per_s"] / f["tokens_per_s"])
    assert o["muon_ns_flops_per_step"] > 0 and rec[0]["flops_ratio_with_ns"] > rec[0]["flops_ratio"]
