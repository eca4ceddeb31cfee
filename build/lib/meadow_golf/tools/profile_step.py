"""Where does a training step's time go? torch.profiler over a few steps of benchmark.py's step.

Prints the kernels (or CPU ops) with the most device time, and the step's wall time next to
the summed kernel time: a large gap means the GPU waits for the host (launch-bound).

    python profile_step.py --scale 11L --mode ar --compile on      # on a CUDA machine
    python profile_step.py --scale 5L --vocab_size 1024 --seq_len 256 --batch_tokens 4096 \
        --device cpu --model reference       # benchmark.py's plain-GPT reference (issue 15)

--breakdown (CPU): where our step's time goes by component, measured by switching one thing off
at a time (XSA, QK-norm, softcap, BigramHash, SmearGate, resid_mix, U-Net skips; Muon swapped for
the AdamW of the scalars) and timing each variant against the full step, round-robin in one run.
A variant is not the recipe; its time difference is the component's cost. Rotary has no switch:
its ops (cat, slices, mul) are read off the op table.

On CPU the table is sorted by self CPU time (time inside the op itself, not its children), so the
rows add up to the step and a composite (rms_norm, apply_rope) shows as its elementwise kernels.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from meadow_golf.tools.benchmark import MODES, SCALES, make_reference_step, make_torch_step, torch_device
from meadow_golf.model.gpt import GPTConfig
from meadow_golf.common.cli_help import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--scale", default="11L", choices=sorted(SCALES), help="model scale (benchmark.py's SCALES)")
    p.add_argument("--mode", default="ar", choices=sorted(MODES), help="which training step to profile")
    p.add_argument("--vocab_size", type=int, default=4096, help="vocabulary of the random-token model")
    p.add_argument("--seq_len", type=int, default=1024, help="window length (tokens)")
    p.add_argument("--batch_tokens", type=int, default=65536, help="tokens per step")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the step (auto: on CUDA only)")
    p.add_argument("--device", default="auto", help="auto | cuda | mps | cpu")
    p.add_argument("--steps", type=int, default=5, help="profiled steps (after the warm-up)")
    p.add_argument("--top", type=int, default=25, help="rows of the profiler table to print")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    p.add_argument("--breakdown", action="store_true", help="time component-off variants instead of profiling")
    p.add_argument("--model", default="ours", choices=["ours", "reference"],
                   help="ours: train_cdm.TorchStep in --mode; reference: benchmark.py's plain GPT (AR, AdamW)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch_device(args.device)
    if args.breakdown:
        return breakdown(args, device)
    compile_model = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    cfg = GPTConfig(vocab_size=args.vocab_size, **SCALES[args.scale])
    step, batches, _ = make_torch_step(cfg, args.mode, device, seq_len=args.seq_len,
                                       batch_tokens=args.batch_tokens, compile_model=compile_model)
    if args.model == "reference":  # the same random batches, the reference's step
        step = make_reference_step(cfg, args.seq_len, device)[0]
    cuda = device.type == "cuda"
    for i in range(3):  # compile and settle
        step(batches[i % 2][:, :-1], batches[i % 2][:, 1:])
    if cuda:
        torch.cuda.synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for i in range(args.steps):
            step(batches[i % 2][:, :-1], batches[i % 2][:, 1:])
        if cuda:
            torch.cuda.synchronize(device)
    wall_ms = 1000 * (time.perf_counter() - t0) / args.steps
    sort = "cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.top, max_name_column_width=70))
    if cuda:
        kernel_us = sum(e.device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA")
        print(f"profile:step wall_ms:{wall_ms:.1f} kernel_ms:{kernel_us / 1000 / args.steps:.1f} "
              f"(wall includes the profiler's own overhead)")
    else:
        print(f"profile:step wall_ms:{wall_ms:.1f}")
    return 0


# Each variant switches off one component (a GPTConfig field) or, for "muon", the Muon update.
VARIANTS = {"full": {}, "xsa": dict(xsa_last_n=0), "qk_norm": dict(qk_norm=False), "softcap": dict(logit_softcap=0.0),
            "bigram": dict(bigram_dim=0), "smear": dict(smear_gate=False), "resid_mix": dict(resid_mix=False),
            "unet": dict(unet_skips=False), "muon": {}}


def breakdown(args, device) -> int:
    import torch

    base = GPTConfig(vocab_size=args.vocab_size, **SCALES[args.scale])
    runs = {}
    for name, change in VARIANTS.items():
        step, batches, _ = make_torch_step(dataclasses.replace(base, **change), args.mode, device,
                                           seq_len=args.seq_len, batch_tokens=args.batch_tokens,
                                           compile_model=False)
        if name == "muon":
            step.optimizers = step.optimizers[1:]  # Muon dropped: its matrices get no update (timing only)
        runs[name] = (step, batches)
    ref_step = make_reference_step(base, args.seq_len, device)[0]
    runs["reference"] = (ref_step, runs["full"][1])
    seconds = dict.fromkeys(runs, 0.0)
    for i in range(args.steps + 1):  # the first round warms up and is not counted
        for name, (step, batches) in runs.items():
            t0 = time.perf_counter()
            step(batches[i % 2][:, :-1], batches[i % 2][:, 1:])
            if i:
                seconds[name] += time.perf_counter() - t0
    full = 1000 * seconds["full"] / args.steps
    print(f"breakdown: {args.scale} T={args.seq_len} rows={args.batch_tokens // args.seq_len} threads={torch.get_num_threads()} "
          f"steps={args.steps} (round-robin)")
    for name in runs:
        ms = 1000 * seconds[name] / args.steps
        what = "full step" if name == "full" else ("plain-GPT reference step" if name == "reference" else f"{name} off")
        print(f"breakdown:{name} ms_per_step:{ms:.1f} saves_ms:{full - ms:+.1f} ({100 * (full - ms) / full:+.1f}%)  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
