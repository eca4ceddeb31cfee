"""How fast are the training steps and the CF evaluation, and how close to the hardware's limit?

For each backend x scale x step mode it times the trainer's own step (train_cdm.TorchStep /
train_cdm_mlx.run_step: every pass, the optimizer update, nothing else) on random tokens, after
warm-up steps that absorb compilation, and reports ms/step, tokens/s (training tokens: the
batch_tokens of a step, not counting the denoising pass's re-read of them), peak memory and an
MFU estimate. Then it times eval_cf's decoder loop (eval_cf.score_decoders, all decoders) on
random windows and reports windows/s. No data folder is needed: throughput does not depend on
which tokens are fed. Nothing printed here is a compression rate; the CF timing scores random
tokens and its NLLs are discarded.

Step modes: ar (cdm_weight 0, the control), joint (cdm_weight 0.3, one forward+backward per pass)
and joint_fused (--fuse_passes: both passes in one batched forward; torch only).

FLOPs (stated so the MFU can be checked): per training token and per pass,
    6 * (N_matmul + V * d) + 6 * L * T * d        (forward 2x, backward 4x)
N_matmul = the Linear weights of the blocks and the bigram projection; V*d the tied output head
(the embedding lookups are not matmuls); 6*L*T*d the attention score and value products
(2 * 2 * T * d per token and layer forward, causal masking counted as half). The joint step
counts two passes (the denoising pass is bidirectional: full attention, 12*L*T*d). MFU = achieved
FLOP/s / peak FLOP/s, the peak of the device's compute dtype: bf16 dense on CUDA (H100/H200 SXM:
989 TFLOP/s, from the datasheet), and on CPU the fp32 matmul rate measured here (a 2048^2 GEMM).

The plain-GPT reference (--reference): a nanoGPT-style model of the same dims (num_layers,
model_dim, num_heads, mlp_mult, vocab, seq_len), written here in a few lines: learned positions,
pre-LayerNorm blocks, standard multi-head attention (one fused qkv Linear, no GQA), a GELU MLP,
a tied head, no biases, plain cross-entropy, torch's AdamW on every parameter. Its FLOPs follow
the SAME convention as ours (reference_flops_per_token):
    6 * (N_matmul + V * d) + 6 * L * T * d,   N_matmul = L * (4 d^2 + 2 * mlp_mult * d^2)
(the position and token lookups are not matmuls). Neither count includes optimizer FLOPs: Muon's
Newton-Schulz (muon_ns_flops_per_step, reported beside the ratio) is real work our step does that
the convention leaves out. Our AR step and the reference's step are timed interleaved, chunk by
chunk, in one run, so machine load hits both alike; the record gives our FLOP/s and tokens/s as
ratios to the reference's.

    python benchmark.py --quick --json_out bench_cpu.json          # CPU: 5L, seq 256, a few steps
    python benchmark.py --scales 5L --modes ar --vocab_size 1024 --seq_len 256 --batch_tokens 4096 \
        --cf_windows 0 --reference --steps 12 --json_out perf/cpu/bench_vs_reference.json   # issue 15
    python benchmark.py --scales 5L,11L --compile on --json_out bench_h100.json   # the H100 recipe
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.model.gpt import GPTConfig
from meadow_golf.common.cli_help import HelpFormatter

SCALES = {  # METHOD.md §3 (PRESET=h100)
    "5L": dict(num_layers=5, model_dim=256, bigram_dim=128, xsa_last_n=2),
    "11L": dict(num_layers=11, model_dim=512, bigram_dim=128, xsa_last_n=4),
}
MODES = {"ar": (0.0, False), "joint": (0.3, False), "joint_fused": (0.3, True)}
PEAK_TFLOPS_CUDA = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # bf16 dense, datasheets
CF_DECODERS = ["ar", "cf_published", "cf_valid"]


def flops_per_token(cfg: GPTConfig, seq_len: int, joint: bool) -> float:
    d, L, V = cfg.model_dim, cfg.num_layers, cfg.vocab_size
    kv = cfg.num_kv_heads * cfg.head_dim
    per_layer = d * d * 2 + 2 * d * kv + 2 * cfg.mlp_mult * d * d  # q, proj, k, v, up, down
    n_matmul = L * per_layer + (cfg.bigram_dim * d if cfg.bigram_dim else 0)
    dense = 6 * (n_matmul + V * d)
    causal = dense + 6 * L * seq_len * d
    return causal + (dense + 12 * L * seq_len * d if joint else 0)


def measured_cpu_peak_tflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t0, n = time.perf_counter(), 5
    for _ in range(n):
        a @ b
    return 2 * 2048 ** 3 * n / (time.perf_counter() - t0) / 1e12


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def time_steps(run_one, n: int, sync=lambda: None):
    """(seconds for run_one(0), ..., run_one(n-1) up to sync(), the last call's result)."""
    t0, result = time.perf_counter(), None
    for i in range(n):
        result = run_one(i)
    sync()
    return time.perf_counter() - t0, result


# ----------------------------------------------------------------------------- torch


def torch_device(name: str):
    from meadow_golf.eval.torch_backend import resolve_device

    return resolve_device(name)


def torch_peak_tflops(device, override: float | None) -> tuple[float, str]:
    import torch

    if override:
        return override, "--peak_tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAK_TFLOPS_CUDA.items():
            if key in name:
                return peak, f"{key} bf16 dense datasheet"
        return float("nan"), f"unknown peak for {name}"
    return measured_cpu_peak_tflops(), "fp32 2048^3 matmul measured here"


def make_torch_step(cfg: GPTConfig, mode: str, device, *, seq_len: int, batch_tokens: int, compile_model: bool):
    """(the trainer's step for this mode, two random (B, T+1) batches, the model)."""
    import torch

    from meadow_golf.model.gpt import GPT
    from meadow_golf.eval.torch_backend import autocast_for
    from meadow_golf.train.train_cdm import TorchStep, build_optimizers_for
    from meadow_golf.train.flags import build_parser

    weight, fused = MODES[mode]
    defaults = build_parser().parse_args(["--data_dir", "unused"])
    torch.manual_seed(0)
    model = GPT(cfg).to(device).train()
    forward_model = torch.compile(model) if compile_model else model
    gen = torch.Generator(device=device).manual_seed(1)
    step = TorchStep(model, forward_model, build_optimizers_for(model, defaults, device), gen,
                     autocast_for(device), cdm_weight=weight, fused=fused)
    B = batch_tokens // seq_len
    data_gen = torch.Generator(device=device).manual_seed(2)
    batches = [torch.randint(0, cfg.vocab_size, (B, seq_len + 1), generator=data_gen, device=device)
               for _ in range(2)]
    return step, batches, model


def bench_torch_step(cfg: GPTConfig, mode: str, device, *, seq_len: int, batch_tokens: int, steps: int,
                     warmup: int, compile_model: bool, peak_tflops: float) -> dict:
    import torch

    step, batches, model = make_torch_step(cfg, mode, device, seq_len=seq_len, batch_tokens=batch_tokens,
                                           compile_model=compile_model)

    def run_one(i):
        b = batches[i % 2]
        return step(b[:, :-1], b[:, 1:])

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    warmup_s, _ = time_steps(run_one, warmup, sync)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, losses = time_steps(run_one, steps, sync)
    finite = all(v is None or bool(torch.isfinite(v)) for v in losses)
    peak_mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return step_record(cfg, mode, seq_len, batch_tokens, steps, seconds, warmup, warmup_s, peak_tflops,
                       peak_mem, finite, compiled=compile_model, params=model.num_params())


# ----------------------------------------------------------------------------- plain-GPT reference


def reference_flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
    """The reference's causal training FLOPs per token, in flops_per_token's convention."""
    d, L, V = cfg.model_dim, cfg.num_layers, cfg.vocab_size
    n_matmul = L * (4 * d * d + 2 * cfg.mlp_mult * d * d)  # qkv (3 d^2), proj, up, down
    return 6 * (n_matmul + V * d) + 6 * L * seq_len * d


def muon_ns_flops_per_step(model, ns_steps: int = 5) -> float:
    """Matmul FLOPs of Muon's Newton-Schulz in one optimizer step (optim.newton_schulz_orthogonalize):
    per iteration on an m x n matrix (m <= n, the side it works on) X X^T (2 m^2 n), A A (2 m^3)
    and (.) X (2 m^2 n). Not part of the per-token convention; reported to explain the ratio."""
    from meadow_golf.model.gpt import param_groups

    total = 0
    for _, p in param_groups(model)["muon"]:
        m, n = sorted(p.shape)
        total += ns_steps * (4 * m * m * n + 2 * m ** 3)
    return float(total)


def make_reference(cfg: GPTConfig, seq_len: int, device):
    """(a plain nanoGPT-style GPT of cfg's dims, its AdamW). The classes live inside the function:
    they exist only to be timed (and FLOP-counted in the tests), never saved or loaded."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    d, H = cfg.model_dim, cfg.num_heads

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
            self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
            self.up = nn.Linear(d, cfg.mlp_mult * d, bias=False)
            self.down = nn.Linear(cfg.mlp_mult * d, d, bias=False)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, d))
            return x + self.down(F.gelu(self.up(self.ln2(x))))

    class ReferenceGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok_emb, self.pos_emb = nn.Embedding(cfg.vocab_size, d), nn.Embedding(seq_len, d)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.num_layers))
            self.ln_f = nn.LayerNorm(d, bias=False)

        def forward(self, idx):
            x = self.tok_emb(idx) + self.pos_emb.weight[: idx.size(1)]
            for block in self.blocks:
                x = block(x)
            return F.linear(self.ln_f(x), self.tok_emb.weight)  # tied head

    torch.manual_seed(0)
    model = ReferenceGPT().to(device).train()
    return model, torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)


def make_reference_step(cfg: GPTConfig, seq_len: int, device):
    """(one complete reference training step: forward, cross-entropy, backward, AdamW; the model)."""
    import torch.nn.functional as F

    model, opt = make_reference(cfg, seq_len, device)

    def step(x, y):
        loss = F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step, model


def bench_vs_reference(cfg: GPTConfig, device, *, seq_len: int, batch_tokens: int, steps: int, warmup: int,
                       peak_tflops: float, chunk: int = 2) -> dict:
    """Our AR step (train_cdm.TorchStep) and the reference's, timed interleaved in chunks of `chunk`
    steps (ours, reference, ours, ...) so a change in machine load falls on both."""
    import torch

    ours, batches, model = make_torch_step(cfg, "ar", device, seq_len=seq_len, batch_tokens=batch_tokens,
                                           compile_model=False)
    ref, ref_model = make_reference_step(cfg, seq_len, device)
    runs = {"ours": lambda i: ours(batches[i % 2][:, :-1], batches[i % 2][:, 1:])[0],
            "reference": lambda i: ref(batches[i % 2][:, :-1], batches[i % 2][:, 1:])}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for run_one in runs.values():
        time_steps(run_one, warmup, sync)
    seconds = {k: 0.0 for k in runs}
    last = {}
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        for k, run_one in runs.items():
            s, last[k] = time_steps(run_one, n, sync)
            seconds[k] += s
        done += n
    fpt = {"ours": flops_per_token(cfg, seq_len, joint=False), "reference": reference_flops_per_token(cfg, seq_len)}
    side = {}
    for k in runs:
        tok_s = batch_tokens * steps / seconds[k]
        side[k] = {"seconds": seconds[k], "ms_per_step": 1000 * seconds[k] / steps, "tokens_per_s": tok_s,
                   "flops_per_token": fpt[k], "achieved_tflops": fpt[k] * tok_s / 1e12,
                   "loss_finite": bool(torch.isfinite(last[k]))}
    side["ours"]["params"], side["reference"]["params"] = model.num_params(), sum(
        p.numel() for p in ref_model.parameters())
    ns = muon_ns_flops_per_step(model)
    side["ours"]["muon_ns_flops_per_step"] = ns
    side["ours"]["achieved_tflops_with_ns"] = (fpt["ours"] * batch_tokens + ns) * steps / seconds["ours"] / 1e12
    return {
        "kind": "vs_reference", "num_layers": cfg.num_layers, "model_dim": cfg.model_dim,
        "vocab_size": cfg.vocab_size, "seq_len": seq_len, "batch_tokens": batch_tokens, "rows": batch_tokens // seq_len,
        "timed_steps": steps, "warmup_steps": warmup, "chunk": chunk, "ours": side["ours"], "reference": side["reference"],
        "flops_ratio": side["ours"]["achieved_tflops"] / side["reference"]["achieved_tflops"],
        "tokens_ratio": side["ours"]["tokens_per_s"] / side["reference"]["tokens_per_s"],
        "flops_ratio_with_ns": side["ours"]["achieved_tflops_with_ns"] / side["reference"]["achieved_tflops"],
        "mfu_ours": side["ours"]["achieved_tflops"] / peak_tflops if peak_tflops > 0 else None,
    }


# ----------------------------------------------------------------------------- mlx


def bench_mlx_step(cfg: GPTConfig, mode: str, *, seq_len: int, batch_tokens: int, steps: int, warmup: int,
                   peak_tflops: float) -> dict:
    import mlx.core as mx

    from meadow_golf.eval.mlx_backend import resolve_device, resolve_dtype
    from meadow_golf.model.gpt_mlx import GPT, param_groups
    from meadow_golf.train.optim_mlx import build_optimizer
    from meadow_golf.train.train_cdm_mlx import make_train_step, run_step

    weight, fused = MODES[mode]
    if fused:
        raise ValueError("joint_fused is a torch mode")
    device = resolve_device("auto")
    mx.set_default_device(device)
    dtype = resolve_dtype("auto", device)
    mx.random.seed(0)
    model = GPT(cfg, compute_dtype=dtype)
    mx.eval(model.parameters())
    optimizer = build_optimizer(param_groups(model), ns_dtype=dtype)
    optimizer.init(model.trainable_parameters())
    step_fn = make_train_step(model, optimizer, cdm_weight=weight)
    rng = np.random.default_rng(2)
    B = batch_tokens // seq_len
    batches = [rng.integers(0, cfg.vocab_size, (B, seq_len + 1)) for _ in range(2)]
    key = [mx.random.key(1)]  # the noise key each step hands to the next

    def run_one(i):
        b = batches[i % 2]
        ar, cdm, key[0] = run_step(step_fn, model, optimizer, b[:, :-1], b[:, 1:], key[0], cdm_weight=weight)
        return ar, cdm

    warmup_s, _ = time_steps(run_one, warmup)  # run_step evaluates each step: no sync needed
    seconds, (ar, cdm) = time_steps(run_one, steps)
    finite = bool(np.isfinite(ar.item())) and (cdm is None or bool(np.isfinite(cdm.item())))
    peak = getattr(mx, "get_peak_memory", None)
    rec = step_record(cfg, mode, seq_len, batch_tokens, steps, seconds, warmup, warmup_s, peak_tflops,
                      int(peak()) if peak else None, finite, compiled=True, params=model.num_params())
    rec.update(device=str(device), dtype=str(dtype))
    return rec


# ----------------------------------------------------------------------------- records


def step_record(cfg, mode, seq_len, batch_tokens, steps, seconds, warmup, warmup_s, peak_tflops, peak_mem,
                finite, *, compiled, params) -> dict:
    joint = MODES[mode][0] > 0
    fpt = flops_per_token(cfg, seq_len, joint)
    tok_s = batch_tokens * steps / seconds
    achieved = fpt * tok_s / 1e12
    return {
        "kind": "train_step", "mode": mode, "cdm_weight": MODES[mode][0], "fused": MODES[mode][1],
        "compiled": compiled, "num_layers": cfg.num_layers, "model_dim": cfg.model_dim,
        "vocab_size": cfg.vocab_size, "params": params, "seq_len": seq_len, "batch_tokens": batch_tokens,
        "timed_steps": steps, "warmup_steps": warmup, "warmup_seconds": warmup_s, "seconds": seconds,
        "ms_per_step": 1000 * seconds / steps, "tokens_per_s": tok_s,
        "flops_per_token": fpt, "achieved_tflops": achieved,
        "mfu": achieved / peak_tflops if peak_tflops == peak_tflops and peak_tflops > 0 else None,
        "peak_memory_bytes": peak_mem, "losses_finite": finite,
    }


def bench_cf(cfg: GPTConfig, device, *, n_windows: int, seq_len: int, batch_size: int) -> dict:
    """eval_cf's decoder loop on random windows of a random-init model: speed only."""
    import torch

    from meadow_golf.eval import cf
    from meadow_golf.eval.eval_cf import score_decoders
    from meadow_golf.model.gpt import GPT
    from meadow_golf.eval.torch_backend import TorchScorer

    torch.manual_seed(0)
    model = GPT(cfg).to(device).eval()
    windows = np.random.default_rng(3).integers(0, cfg.vocab_size, (n_windows, seq_len + 1))
    ones = np.ones((n_windows, seq_len), dtype=np.int64)  # placeholder bytes: no BPB is reported
    t0 = time.perf_counter()
    res = score_decoders(TorchScorer(model, device), windows, ones, CF_DECODERS, batch_size=batch_size,
                         settings=cf.CFSettings(vocab_size=cfg.vocab_size, stride=2, rounds=2, n_random=3, seed=42))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return {"kind": "cf_eval", "decoders": CF_DECODERS, "num_layers": cfg.num_layers, "model_dim": cfg.model_dim,
            "vocab_size": cfg.vocab_size, "windows": n_windows, "seq_len": seq_len, "batch_size": batch_size,
            "seconds": seconds, "windows_per_s": n_windows / seconds,
            "decoder_seconds": {k: v["seconds"] for k, v in res.items()},
            "note": "random tokens, random-init model: a timing, not a code length"}


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CPU-sized: 5L, vocab 1024, seq 256, 8192 tokens/step, 3 timed steps, CF on 32 x 1024 windows")
    p.add_argument("--backends", default="torch", help="comma list of torch, mlx")
    p.add_argument("--scales", default="5L,11L", help="comma list of " + ", ".join(SCALES))
    p.add_argument("--modes", default="ar,joint,joint_fused", help="comma list of " + ", ".join(MODES))
    p.add_argument("--vocab_size", type=int, default=4096, help="vocabulary of the random-token models")
    p.add_argument("--seq_len", type=int, default=1024, help="training window length (tokens)")
    p.add_argument("--batch_tokens", type=int, default=65536, help="training tokens per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="torch.compile; auto: on CUDA")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"], help="torch device")
    p.add_argument("--cf_windows", type=int, default=None,
                   help="CF timing windows (default 500, the original protocol; 32 with --quick); 0 skips it")
    p.add_argument("--cf_seq_len", type=int, default=1024, help="targets per window of the CF evaluation timing")
    p.add_argument("--cf_batch_size", type=int, default=16, help="windows per forward of the CF evaluation timing")
    p.add_argument("--cf_scales", default="5L,11L", help="comma-separated scales whose CF evaluation is timed")
    p.add_argument("--reference", action="store_true",
                   help="also time our AR step against a plain-GPT reference of the same dims, interleaved (torch)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0: torch's default). On a shared CPU, fewer threads than cores "
                        "avoids the stalls of a parallel op waiting for a descheduled thread")
    p.add_argument("--peak_tflops", type=float, default=None, help="override the MFU denominator")
    p.add_argument("--json_out", default=None, help="write the measurements as JSON here; none: print only")
    return p


def parse_list(text: str, allowed, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad}; choose from {sorted(allowed)}")
    return items


def apply_quick(args) -> None:
    args.scales, args.cf_scales = "5L", "5L"
    args.vocab_size, args.seq_len, args.batch_tokens = 1024, 256, 8192
    args.steps, args.warmup = 3, 1
    args.cf_batch_size = 8
    if args.cf_windows is None:
        args.cf_windows = 32


def ratios(records: list[dict]) -> list[dict]:
    """joint / ar throughput per (backend, device, scale, compiled): the >= 0.5 goal."""
    out = []
    by_key = {}
    for r in records:
        if r["kind"] == "train_step":
            by_key[(r["backend"], r["device"], r["num_layers"], r["compiled"], r["mode"])] = r
    for (backend, device, layers, compiled, mode), r in by_key.items():
        ar = by_key.get((backend, device, layers, compiled, "ar"))
        if mode != "ar" and ar:
            out.append({"backend": backend, "device": device, "num_layers": layers, "compiled": compiled,
                        "mode": mode, "ratio_to_ar": r["tokens_per_s"] / ar["tokens_per_s"]})
    return out


def line(r: dict) -> str:
    if r["kind"] == "vs_reference":
        o, f = r["ours"], r["reference"]
        return (f"bench:vs_reference L:{r['num_layers']} d:{r['model_dim']} T:{r['seq_len']} rows:{r['rows']} "
                f"ours_gflops:{1000 * o['achieved_tflops']:.1f} ref_gflops:{1000 * f['achieved_tflops']:.1f} "
                f"flops_ratio:{r['flops_ratio']:.3f} tokens_ratio:{r['tokens_ratio']:.3f} "
                f"flops_ratio_with_ns:{r['flops_ratio_with_ns']:.3f} ours_ms:{o['ms_per_step']:.1f} "
                f"ref_ms:{f['ms_per_step']:.1f}")
    if r["kind"] == "train_step":
        mem = f"{r['peak_memory_bytes'] / 2**30:.2f}GiB" if r["peak_memory_bytes"] else "n/a"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        return (f"bench:train backend:{r['backend']} device:{r['device']} L:{r['num_layers']} mode:{r['mode']} "
                f"compiled:{str(r['compiled']).lower()} ms_per_step:{r['ms_per_step']:.1f} "
                f"tok_s:{r['tokens_per_s']:.0f} mfu:{mfu} peak_mem:{mem}")
    return (f"bench:cf_eval backend:{r['backend']} device:{r['device']} L:{r['num_layers']} "
            f"windows:{r['windows']}x{r['seq_len']} seconds:{r['seconds']:.1f} windows_s:{r['windows_per_s']:.2f}")


def write_result(path, result: dict) -> None:
    atomic_write_bytes(path, (json.dumps(result, indent=2) + "\n").encode())


def run(args) -> dict:
    if args.quick:
        apply_quick(args)
    if args.cf_windows is None:
        args.cf_windows = 500
    backends = parse_list(args.backends, {"torch", "mlx"}, "backends")
    scales = parse_list(args.scales, SCALES, "scales")
    modes = parse_list(args.modes, MODES, "modes")
    cf_scales = parse_list(args.cf_scales, SCALES, "cf scales") if args.cf_windows > 0 else []
    if args.batch_tokens % args.seq_len or args.steps < 1 or args.warmup < 0:
        raise ValueError("--batch_tokens must be a multiple of --seq_len; --steps >= 1; --warmup >= 0")
    records: list[dict] = []
    env: dict = {"python": platform.python_version(), "cpu": cpu_name()}
    result = {"tool": "benchmark", "quick": args.quick, "args": vars(args), "env": env, "records": records,
              "complete": False}

    def add(rec: dict) -> None:
        """Record, print and (with --json_out) save at once: a run cut short keeps what it measured."""
        records.append(rec)
        print(line(rec) if "error" not in rec else f"bench:error {rec}", flush=True)
        if args.json_out:
            write_result(args.json_out, result)

    for backend in backends:
        if backend == "torch":
            import torch

            if args.threads > 0:
                torch.set_num_threads(args.threads)
            device = torch_device(args.device)
            compile_model = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
            peak, peak_src = torch_peak_tflops(device, args.peak_tflops)
            dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({cpu_name()})"
            env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        else:
            import mlx.core as mx

            from meadow_golf.eval.mlx_backend import device_name, resolve_device

            peak = args.peak_tflops or measured_cpu_peak_tflops()
            peak_src = "--peak_tflops" if args.peak_tflops else "torch fp32 matmul measured here (MLX on CPU)"
            dev_name = device_name(resolve_device("auto"))
            env.update(mlx=mx.__version__)
        env.setdefault("peaks", {})[backend] = {"tflops": peak, "source": peak_src}
        for scale in scales:
            cfg = GPTConfig(vocab_size=args.vocab_size, **SCALES[scale])
            for mode in modes:
                if backend == "mlx" and MODES[mode][1]:
                    continue
                kw = dict(seq_len=args.seq_len, batch_tokens=args.batch_tokens, steps=args.steps,
                          warmup=args.warmup, peak_tflops=peak)
                try:
                    if backend == "torch":
                        rec = bench_torch_step(cfg, mode, device, compile_model=compile_model, **kw)
                    else:
                        rec = bench_mlx_step(cfg, mode, **kw)
                except Exception as e:  # one failing configuration must not lose the others
                    rec = {"kind": "train_step", "mode": mode, "num_layers": cfg.num_layers,
                           "error": f"{type(e).__name__}: {e}"}
                rec.update(backend=backend, device=dev_name, scale=scale)
                add(rec)
        if backend == "torch" and args.reference:
            for scale in scales:
                cfg = GPTConfig(vocab_size=args.vocab_size, **SCALES[scale])
                rec = bench_vs_reference(cfg, device, seq_len=args.seq_len, batch_tokens=args.batch_tokens,
                                         steps=args.steps, warmup=args.warmup, peak_tflops=peak)
                rec.update(backend=backend, device=dev_name, scale=scale)
                add(rec)
        if backend == "torch":
            for scale in cf_scales:
                cfg = GPTConfig(vocab_size=args.vocab_size, **SCALES[scale])
                rec = bench_cf(cfg, device, n_windows=args.cf_windows, seq_len=args.cf_seq_len,
                               batch_size=args.cf_batch_size)
                rec.update(backend=backend, device=dev_name, scale=scale)
                add(rec)
    result.update(max_rss_bytes=max_rss_bytes(), complete=True,
                  ratios=ratios([r for r in records if "error" not in r]))
    for r in result["ratios"]:
        print(f"bench:ratio backend:{r['backend']} L:{r['num_layers']} mode:{r['mode']} "
              f"compiled:{str(r['compiled']).lower()} joint_over_ar:{r['ratio_to_ar']:.3f}")
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json_out:
        write_result(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
