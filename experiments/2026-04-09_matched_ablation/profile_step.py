"""Where does a training step's time go? torch.profiler over a few steps of benchmark.py's step.

Prints the kernels (or CPU ops) with the most device time, and the step's wall time next to
the summed kernel time: a large gap means the GPU waits for the host (launch-bound).

    python profile_step.py --scale 11L --mode ar --compile on      # on a CUDA machine
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmark import MODES, SCALES, make_torch_step, torch_device
from model import GPTConfig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="11L", choices=sorted(SCALES))
    p.add_argument("--mode", default="ar", choices=sorted(MODES))
    p.add_argument("--vocab_size", type=int, default=4096)
    p.add_argument("--seq_len", type=int, default=1024)
    p.add_argument("--batch_tokens", type=int, default=65536)
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    device = torch_device(args.device)
    compile_model = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    cfg = GPTConfig(vocab_size=args.vocab_size, **SCALES[args.scale])
    step, batches, _ = make_torch_step(cfg, args.mode, device, seq_len=args.seq_len,
                                       batch_tokens=args.batch_tokens, compile_model=compile_model)
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
    sort = "cuda_time_total" if cuda else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.top, max_name_column_width=70))
    if cuda:
        kernel_us = sum(e.device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA")
        print(f"profile:step wall_ms:{wall_ms:.1f} kernel_ms:{kernel_us / 1000 / args.steps:.1f} "
              f"(wall includes the profiler's own overhead)")
    else:
        print(f"profile:step wall_ms:{wall_ms:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
