"""Joint causal (AR) + D3PM-uniform denoising (CDM) training with shared weights (METHOD.md §4).

(--noise absorbing and --cdm_loss elbo replace the noise and the loss below: model/noise.py.)

One model, one set of parameters. Each step:
  AR loss : causal next-token cross-entropy on (x, y)                         (weight 1)
  CDM loss: one mask rate r ~ U(0.15, 0.50); each input position is replaced with probability r
            by a token drawn uniformly from the vocabulary; bidirectional forward on the noisy
            input; cross-entropy against the clean token AT the same position, averaged over the
            corrupted positions                                               (weight cdm_weight)
The only difference between the two forwards is `is_causal`. `--cdm_weight 0` is the
causal-only control and skips the denoising forward and backward entirely.

Every default is the original recipe's rule (METHOD.md §4; the README's rules table lists them
with the flag that departs from each): Muon on every 2-D parameter but the token embedding, with
per-matrix clipping before momentum and float32 Newton-Schulz; the step- and time-based warmdown;
EMA 0.997 from step int(0.8 * --steps), used by every validation once it exists and saved at the
end; a clock that includes compilation, validations and step saves; validation on the first
1,000,000 tokens cut to whole windows; tok_emb a bfloat16 parameter on CUDA.
Fixes that cannot change the distribution of results stay on: every RNG is seeded from --seed
(init, mask rates, noise), and results.json reports the LAST validation as final_val_bpb (the
original reported the best one seen, kept here as best_val_bpb).

    python train_cdm.py --data_dir DIR                                  # the original recipe, 540 s
    python train_cdm.py --data_dir DIR --seq_len 256 --batch_tokens 4096 --steps 200 --device cpu
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from meadow_golf.model.checkpoint import CheckpointError, load_torch_checkpoint, save_torch_checkpoint
from meadow_golf.model.gpt import GPT, param_groups, state_dict_numpy
from meadow_golf.train.optim import build_optimizers
from torch.nn.parallel import DistributedDataParallel

from meadow_golf.data.loader import validation_result, validation_windows
from meadow_golf.train.distributed import init_distributed
from meadow_golf.eval.torch_backend import ar_nll_sum_windows, autocast_for, resolve_device
from meadow_golf.model.noise import check_noise_fits, corrupt_torch
from meadow_golf.train.core import TrainerBase
from meadow_golf.train.flags import build_parser, validate_args


def token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (B, T) in float32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           reduction="none").view(targets.shape)


def masked_cdm_loss(ce: torch.Tensor, mask: torch.Tensor, n_masked: torch.Tensor, world_size: int) -> torch.Tensor:
    """The denoising loss: CE summed over this rank's corrupted positions, divided by the GLOBAL
    count of corrupted positions, times world_size (so DDP's average over ranks is the global mean).
    With --cdm_loss elbo, mask is noise.corrupt_torch's float weight (mask / t) and n_masked the global B*T."""
    return (ce * mask).sum() * world_size / n_masked.clamp_min(1)


def causal_ce(model, x, y, autocast) -> torch.Tensor:
    """Mean causal next-token cross-entropy (the plain path's AR loss)."""
    with autocast:
        logits = model(x, is_causal=True)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


def reversed_window(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The retrodiction pass's (inputs, targets): the window read right to left."""
    rev = torch.cat([x, y[:, -1:]], dim=1).flip(1)
    return rev[:, :-1], rev[:, 1:]


def train_step(model, x, y, *, cdm_weight: float, vocab_size: int, gen: torch.Generator, autocast,
               retro_alpha: float = 0.0, fused: bool = False, rank: int = 0, world_size: int = 1,
               no_sync=None, corrupt=None, noise: str = "uniform", cdm_loss: str = "plain"):
    """Forward/backward of one step; gradients accumulate in .grad. Returns (ar_loss, cdm_loss|None).

    The gradient is grad(AR) + cdm_weight * grad(CDM) [+ retro_alpha * grad(reversed AR)]. The
    retrodiction term (METHOD.md §7, the earlier research line) is causal next-token loss on the
    time-reversed window: the model reads each row right to left and predicts the token before.

    Plain path: one forward+backward per pass, each graph freed before the next forward.
    fused=True: every pass in ONE batched forward (causal rows first, then the noisy rows) and
    one backward; the same losses and gradients up to float rounding, fewer and larger kernels.
    With data parallelism (world_size > 1) the CDM loss is this rank's masked CE sum over the
    GLOBAL masked count times world_size, so the ranks' average gradient (DDP) is the global-batch
    gradient; `no_sync` (DDP's) keeps all but the last backward from all-reducing.
    The returned losses are this rank's parts; their mean over the ranks is the global loss.
    corrupt(x) -> (noisy, mask, n_masked) replaces the drawn noise (scripts/replay_fixture.py
    injects the noise recorded from the original); by default noise.corrupt_torch draws it from gen.
    """
    if corrupt is None:
        def corrupt(x):
            return corrupt_torch(x, vocab_size, gen, rank, world_size, noise=noise, loss=cdm_loss)
    last_sync = contextlib.nullcontext
    no_sync = no_sync or last_sync
    if fused:
        return _fused_step(model, x, y, cdm_weight=cdm_weight, corrupt=corrupt, autocast=autocast,
                           retro_alpha=retro_alpha, world_size=world_size)
    n_backward = 1 + (retro_alpha > 0) + (cdm_weight > 0)
    with no_sync() if n_backward > 1 else last_sync():
        ar_loss = causal_ce(model, x, y, autocast)
        ar_loss.backward()
    if retro_alpha > 0:
        with no_sync() if cdm_weight > 0 else last_sync():
            (retro_alpha * causal_ce(model, *reversed_window(x, y), autocast)).backward()
    if cdm_weight <= 0:
        return ar_loss.detach(), None
    noisy, mask, n_masked = corrupt(x)
    with autocast:
        logits = model(noisy, is_causal=False)
    cdm_loss = masked_cdm_loss(token_ce(logits, x), mask, n_masked, world_size)
    (cdm_weight * cdm_loss).backward()
    return ar_loss.detach(), cdm_loss.detach()


def _fused_step(model, x, y, *, cdm_weight, corrupt, autocast, retro_alpha, world_size):
    B = x.size(0)
    inputs, targets = [x], [y]
    if retro_alpha > 0:
        rx, ry = reversed_window(x, y)
        inputs.append(rx)
        targets.append(ry)
    causal_rows = B * len(inputs)
    if cdm_weight > 0:
        noisy, mask, n_masked = corrupt(x)
        inputs.append(noisy)
        targets.append(x)
    with autocast:
        logits = model(torch.cat(inputs), is_causal=cdm_weight <= 0, causal_rows=causal_rows)
    ce = token_ce(logits, torch.cat(targets))
    ar_loss = ce[:B].mean()
    total = ar_loss
    if retro_alpha > 0:
        total = total + retro_alpha * ce[B:2 * B].mean()
    cdm_loss = None
    if cdm_weight > 0:
        cdm_loss = masked_cdm_loss(ce[causal_rows:], mask, n_masked, world_size)
        total = total + cdm_weight * cdm_loss
    total.backward()
    return ar_loss.detach(), None if cdm_loss is None else cdm_loss.detach()


class TorchStep:
    """One complete training step (all passes, clipping, optimizer update), used by the trainer
    and by benchmark.py, so the benchmark times exactly what training runs.

    forward_model is the model as called in the step (possibly DDP-wrapped and/or compiled);
    model is the plain GPT that owns the parameters.
    """

    def __init__(self, model, forward_model, optimizers, gen, autocast, *, cdm_weight: float,
                 retro_alpha: float = 0.0, fused: bool = False, grad_clip: float = 0.0,
                 rank: int = 0, world_size: int = 1, no_sync=None, corrupt=None, noise: str = "uniform",
                 cdm_loss: str = "plain"):
        self.model, self.forward_model, self.optimizers = model, forward_model, optimizers
        self.gen, self.autocast = gen, autocast
        check_noise_fits(model.config, noise)
        self.kwargs = dict(cdm_weight=cdm_weight, vocab_size=model.config.vocab_size, retro_alpha=retro_alpha,
                           fused=fused, rank=rank, world_size=world_size, no_sync=no_sync, corrupt=corrupt,
                           noise=noise, cdm_loss=cdm_loss)
        self.grad_clip = grad_clip

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        ar_loss, cdm_loss = train_step(self.forward_model, x, y, gen=self.gen, autocast=self.autocast,
                                       **self.kwargs)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        for opt in self.optimizers:
            opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return ar_loss, cdm_loss


def build_optimizers_for(model, args, device: torch.device):
    return build_optimizers(param_groups(model), muon_lr=args.muon_lr, embed_lr=args.embed_lr,
                            scalar_lr=args.scalar_lr, muon_wd=args.muon_wd, adam_wd=args.adam_wd,
                            muon_clip=args.muon_clip, fused=device.type == "cuda")


def apply_schedule(optimizers, lr_mult: float, momentum: float) -> None:
    """lr = base_lr * lr_mult in every group; Muon's momentum."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * lr_mult
            if "momentum" in group:
                group["momentum"] = momentum


def tok_emb_dtype(name: str, device: torch.device) -> torch.dtype:
    """--tok_emb_dtype: auto is bfloat16 on CUDA (the original cast its tok_emb parameter to its
    bf16 compute dtype) and float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


class EMA:
    """The original's EMA over the state dict: created as a copy (same dtypes), then
    shadow = shadow * decay + weights * (1 - decay), in place, after each later update."""

    def __init__(self, model):
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model, decay: float) -> None:
        for k, v in model.state_dict().items():
            self.shadow[k].mul_(decay).add_(v, alpha=1.0 - decay)

    def load_into(self, model) -> None:
        model.load_state_dict(self.shadow)


class Trainer(TrainerBase):
    """The torch backend of core.TrainerBase."""

    backend = "torch"
    checkpoint_suffix = ".pt"

    def __init__(self, args):
        # The process group first: the base class checks the batch against the world size.
        self.dist = init_distributed(resolve_device(args.device))
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.device = self.dist.device
        super().__init__(args)
        self.autocast = autocast_for(self.device)
        torch.manual_seed(args.seed)
        self.model = GPT(self.config).to(self.device)
        emb = self.model.tok_emb.weight
        emb.data = emb.data.to(tok_emb_dtype(args.tok_emb_dtype, self.device))
        ddp = None
        if self.dist.enabled:
            # The only buffers are the constant RoPE tables: nothing to broadcast every forward.
            ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                          broadcast_buffers=False)
        wrapped = ddp if ddp is not None else self.model
        # Both passes go through the compiled module (the original compiled only the causal one).
        self.forward_model = torch.compile(wrapped) if args.compile else wrapped
        self.optimizers = build_optimizers_for(self.model, args, self.device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(args.seed + 1)  # corruption stream, separate from init
        self.step_fn = TorchStep(self.model, self.forward_model, self.optimizers, self.gen, self.autocast,
                                 cdm_weight=args.cdm_weight, retro_alpha=args.retro_alpha, fused=args.fuse_passes,
                                 grad_clip=args.grad_clip, rank=self.rank, world_size=self.world_size,
                                 no_sync=ddp.no_sync if ddp is not None else None, noise=args.noise,
                                 cdm_loss=args.cdm_loss)
        self._bad_step = None
        self.model.train()

    # ------------------------------------------------------------------ hooks
    def device_name(self) -> str:
        return str(self.device)

    def num_params(self) -> int:
        return self.model.num_params()

    def extra_results(self) -> dict:
        return {}

    def warm_up(self, batch: int) -> bool:
        """With --compile: one forward+backward of every pass on the first batch, outside the budget.

        No optimizer step is taken and the gradients are dropped, the stream position and the
        corruption generator are restored: training then proceeds bit for bit as without it.
        """
        if not self.args.compile:
            return False
        stream_state, gen_state = self.stream.state(), self.gen.get_state()
        x, y = self.stream.next_batch(batch, self.args.seq_len, self.rank, self.world_size)
        self.stream.load_state(stream_state)
        train_step(self.forward_model, torch.as_tensor(x, device=self.device), torch.as_tensor(y, device=self.device),
                   gen=self.gen, autocast=self.autocast, **self.step_fn.kwargs)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.gen.set_state(gen_state)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return True

    def agree(self, elapsed: float, stop: bool) -> tuple[float, bool]:
        return self.dist.agree(elapsed, stop)

    def track_losses(self, ar_v, cdm_v) -> None:
        """On the device, no host sync: the first step whose losses were not finite (or 2**62)."""
        ok = torch.isfinite(ar_v) if cdm_v is None else torch.isfinite(ar_v) & torch.isfinite(cdm_v)
        if self._bad_step is None:
            self._bad_step = torch.full((), NO_BAD_STEP, dtype=torch.long, device=ar_v.device)
        self._bad_step = torch.where(ok | (self._bad_step != NO_BAD_STEP), self._bad_step, self.step)

    def first_nonfinite_step(self) -> int | None:
        if self._bad_step is None or int(self._bad_step) == NO_BAD_STEP:
            return None
        return int(self._bad_step)

    def weights_finite(self) -> bool:
        return bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all())

    def mean_over_ranks(self, values: list[float]) -> list[float]:
        return self.dist.all_reduce_mean(values)

    def rank_weight_spread(self) -> float:
        return self.dist.weight_spread(list(self.model.state_dict().values()))

    def set_schedule(self, lr_mult: float, momentum: float) -> None:
        apply_schedule(self.optimizers, lr_mult, momentum)

    def train_step(self, x: np.ndarray, y: np.ndarray):
        args = self.args
        ar_loss, cdm_loss = self.step_fn(torch.as_tensor(x, device=self.device),
                                         torch.as_tensor(y, device=self.device))
        if self.device.type == "cuda" and (args.train_budget_secs > 0 or self.step % args.log_every == 0):
            torch.cuda.synchronize()  # honest wall-clock for the budget
        return ar_loss, cdm_loss

    def scalar(self, value) -> float:
        return float(value)

    def ema_update(self, decay: float) -> None:
        if self.ema is None:
            self.ema = EMA(self.model)
        else:
            self.ema.update(self.model, decay)

    def load_ema(self) -> None:
        self.ema.load_into(self.model)

    def swap_in_ema(self):
        raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.ema.load_into(self.model)
        return raw

    def restore_weights(self, token) -> None:
        self.model.load_state_dict(token)

    def val_bpb(self) -> dict:
        """Each rank scores every world_size-th window; the float64 sums are added over the ranks."""
        windows = validation_windows(self.val_tokens, self.args.seq_len)
        mine = windows[self.rank::self.world_size]
        nll = ar_nll_sum_windows(self.model, mine, self.args.val_batch_size, self.device) if len(mine) else 0.0
        return validation_result(self.dist.all_reduce_sum([nll])[0], windows, self.tables)

    def weights_numpy(self) -> dict:
        return state_dict_numpy(self.model)

    def save_step(self, name: str) -> None:
        payload = {
            **self.counters(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
            "ema": None if self.ema is None else self.ema.shadow,
        }
        save_torch_checkpoint(self.ckpt_dir / f"{name}.pt", payload)

    def load_state(self, path: Path) -> None:
        payload = load_torch_checkpoint(path)
        self.check_resume(path, payload)
        self.model.load_state_dict(payload["model"])
        for opt, st in zip(self.optimizers, payload["optimizers"]):
            opt.load_state_dict(st)
        rng = payload["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        self.gen.set_state(rng["gen"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.load_counters(payload)
        if payload["ema"] is not None:
            self.ema = EMA(self.model)
            self.ema.shadow = {k: v.to(self.device) for k, v in payload["ema"].items()}


NO_BAD_STEP = 2 ** 62


def main(argv=None) -> int:
    args = build_parser(__doc__).parse_args(argv)
    trainer, finished, rc = None, False, 0
    try:
        validate_args(args)
        trainer = Trainer(args)
        trainer.run()
        finished = True
    except (ValueError, OSError, CheckpointError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        rc = 1
    finally:
        if trainer is not None:
            trainer.dist.close(finished=finished)
    if trainer is not None and trainer.dist.enabled:
        # A torchrun rank leaves here, without the interpreter's teardown: after the process group
        # is gone, objects still holding gloo state (the DDP reducer) were destroyed during
        # interpreter shutdown in an order that sometimes aborted the rank ("terminate called
        # without an active exception", SIGABRT) after every output was written. Every file is
        # already written atomically and synced; only the streams need flushing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
