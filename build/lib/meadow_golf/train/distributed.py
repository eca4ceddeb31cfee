"""Data-parallel training under torchrun: the process group and the few collectives the trainer needs.

`torchrun --nproc_per_node=N train_cdm.py ...` starts N processes with RANK / LOCAL_RANK /
WORLD_SIZE in the environment; a plain `python train_cdm.py` is world size 1 and touches no
torch.distributed code at all. NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK), gloo on CPU.

What makes N processes equal one process on the same global batch (the contract the 2-process
test checks):
- each rank reads the same global chunk of the stream and keeps its own rows (TokenStream.next_batch);
- the denoising noise is drawn for the whole global batch on every rank from the same seeded
  generator, and each rank keeps its rows, so the noise does not depend on the number of ranks;
- gradients are averaged by DistributedDataParallel, and each rank's losses are scaled so that
  the average is the gradient of the global-batch loss (see train_cdm.joint_losses);
- the wall-clock budget is rank 0's clock, shared every step (with any rank's stop request), so every rank takes the same
  number of steps with the same learning rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# In run_folder (torch-free) because the MLX trainer asks it too, and must not import torch.
from meadow_golf.train.run_folder import launched_by_torchrun


@dataclass
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device | None = None  # the collectives' device (NCCL needs CUDA tensors)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, elapsed: float, stop: bool) -> tuple[float, bool]:
        """(rank 0's elapsed, whether any rank wants to stop): one collective per step."""
        if not self.enabled:
            return elapsed, stop
        t = torch.tensor([elapsed if self.is_main else 0.0, float(stop)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t[0].item()), bool(t[1].item() > 0)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise float64 sums over the ranks."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def all_reduce_mean(self, values: list[float]) -> list[float]:
        return [v / self.world_size for v in self.all_reduce_sum(values)]

    def weight_spread(self, tensors: list[torch.Tensor]) -> float:
        """Largest |max - min| over ranks of any weight element: 0.0 when every rank holds the same weights."""
        if not self.enabled:
            return 0.0
        flat = torch.cat([t.detach().float().reshape(-1) for t in tensors]).to(self.device)
        hi, lo = flat.clone(), flat.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        return float((hi - lo).abs().max().item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self, finished: bool = False) -> None:
        """Leave the process group. After a finished run every rank first meets at a barrier: a
        rank that tore its gloo connections down while a peer was still writing its outputs made
        that peer's gloo threads abort the process ("terminate called without an active
        exception", SIGABRT, about 1 launch in 4 on 2 busy cores). After an error no barrier: the
        other ranks may never arrive."""
        if not (self.enabled and dist.is_initialized()):
            return
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun set up; world size 1 (no torchrun) returns a plain context.

    `device` is what --device resolved to; under NCCL each process takes cuda:LOCAL_RANK.
    """
    if not launched_by_torchrun():
        return DistContext(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"multi-process training runs on cuda (NCCL) or cpu (gloo), not {device.type}")
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)
