"""Joint causal (AR) + D3PM-uniform denoising (CDM) training with shared weights (SPEC §4).

One model, one set of parameters. Each step:
  AR loss : causal next-token cross-entropy on (x, y)                         (weight 1)
  CDM loss: one mask rate r ~ U(0.15, 0.50); each input position is replaced with probability r
            by a token drawn uniformly from the vocabulary; bidirectional forward on the noisy
            input; cross-entropy against the clean token AT the same position, averaged over the
            corrupted positions                                               (weight cdm_weight)
The only difference between the two forwards is `is_causal`. `--cdm_weight 0` is the
causal-only control and skips the denoising forward and backward entirely.

Fixes of the original's flaws (SPEC §6): every RNG is seeded from --seed (torch, numpy, mask
rates, noise); the final val_bpb is the LAST evaluation; EMA is either off or really runs
inside the budget from --ema_start_frac of it, and the log says which.

    python train_cdm.py --data_dir DIR --train_budget_secs 540          # original recipe
    python train_cdm.py --data_dir DIR --seq_len 256 --batch_tokens 4096 --steps 200 --device cpu
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import data as data_mod
from checkpoint import (ARTIFACT_LIMIT_BYTES, CheckpointError, load_torch_checkpoint,
                        save_int6_artifact, save_npz, save_torch_checkpoint)
from challenge_format import atomic_write_bytes
from model import GPT, GPTConfig, param_groups, state_dict_numpy
from optim import build_optimizers, muon_momentum
from run_log import RunLog, git_commit, versions
from torch_backend import ar_val_bpb, autocast_for, resolve_device

REPO_ROOT = Path(__file__).resolve().parents[2]
MASK_RATE_RANGE = (0.15, 0.50)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_argument_group("model (SPEC §3; defaults are the 5L config)")
    m.add_argument("--num_layers", type=int, default=5)
    m.add_argument("--model_dim", type=int, default=256)
    m.add_argument("--num_heads", type=int, default=8)
    m.add_argument("--num_kv_heads", type=int, default=4)
    m.add_argument("--mlp_mult", type=int, default=3)
    m.add_argument("--vocab_size", type=int, default=0, help="0: the tokenizer's vocabulary size")
    m.add_argument("--bigram_dim", type=int, default=128, help="0 disables BigramHash")
    m.add_argument("--xsa_last_n", type=int, default=2, help="0 disables XSA")
    for flag in ("smear_gate", "unet_skips", "layer_scale", "resid_mix", "qk_norm"):
        m.add_argument(f"--no_{flag}", action="store_true", help=f"disable {flag}")
    t = p.add_argument_group("training (SPEC §4)")
    t.add_argument("--cdm_weight", type=float, default=0.3, help="0 = causal-only control")
    t.add_argument("--retro_alpha", type=float, default=0.0,
                   help="weight of the reversed-sequence causal loss (retrodiction line); 0 = off")
    t.add_argument("--train_budget_secs", type=float, default=540.0, help="wall-clock budget; 0 = none")
    t.add_argument("--steps", type=int, default=0, help="step cap; 0 = none (one of the two is needed)")
    t.add_argument("--seq_len", type=int, default=1024)
    t.add_argument("--batch_tokens", type=int, default=64 * 1024, help="tokens per step (global)")
    t.add_argument("--warmdown_frac", type=float, default=0.2, help="final fraction with linear LR decay to 0")
    t.add_argument("--muon_lr", type=float, default=0.025)
    t.add_argument("--muon_wd", type=float, default=0.04)
    t.add_argument("--embed_lr", type=float, default=0.035)
    t.add_argument("--scalar_lr", type=float, default=0.025)
    t.add_argument("--adam_wd", type=float, default=0.0)
    t.add_argument("--momentum_warmup_steps", type=int, default=1500)
    t.add_argument("--grad_clip", type=float, default=0.0, help="0 = off")
    t.add_argument("--ema_decay", type=float, default=0.0, help="0 = EMA off")
    t.add_argument("--ema_start_frac", type=float, default=0.8, help="EMA starts at this fraction of the budget")
    t.add_argument("--seed", type=int, default=1337)
    io = p.add_argument_group("data, saves, logs")
    io.add_argument("--data_dir", required=True)
    io.add_argument("--tokenizer_path", default=None, help="default: the tokenizer named in DATA_DIR/meta.json")
    io.add_argument("--checkpoint_dir", default="runs/cdm", help="step checkpoints, logs, results.json")
    io.add_argument("--save_path", default=None, help="portable .npz (default CHECKPOINT_DIR/final_model.npz)")
    io.add_argument("--save_every", type=int, default=500, help="step_<N>.pt every N steps; 0 = final only")
    io.add_argument("--val_every", type=int, default=500, help="0 = only at the end")
    io.add_argument("--val_tokens", type=int, default=1 << 20, help="first N validation tokens; 0 = all")
    io.add_argument("--val_batch_size", type=int, default=32, help="sequences per validation forward")
    io.add_argument("--log_every", type=int, default=50)
    io.add_argument("--resume", default=None, help="a step_*.pt, or 'auto' for the newest in CHECKPOINT_DIR")
    d = p.add_argument_group("device")
    d.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    d.add_argument("--compile", action="store_true", help="torch.compile the model (both passes)")
    return p


def model_config(args, vocab_size: int) -> GPTConfig:
    return GPTConfig(
        vocab_size=vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
        num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
        bigram_dim=args.bigram_dim, xsa_last_n=args.xsa_last_n,
        smear_gate=not args.no_smear_gate, unet_skips=not args.no_unet_skips,
        layer_scale=not args.no_layer_scale, resid_mix=not args.no_resid_mix, qk_norm=not args.no_qk_norm,
    )


def validate_args(args) -> None:
    if args.seq_len < 1 or args.batch_tokens % args.seq_len:
        raise ValueError(f"--batch_tokens {args.batch_tokens} must be a positive multiple of --seq_len {args.seq_len}")
    if args.train_budget_secs <= 0 and args.steps <= 0:
        raise ValueError("give a wall-clock budget (--train_budget_secs > 0) or a step cap (--steps > 0)")
    if args.cdm_weight < 0 or args.retro_alpha < 0:
        raise ValueError("--cdm_weight and --retro_alpha must be >= 0")
    if not 0 <= args.warmdown_frac <= 1 or not 0 <= args.ema_start_frac <= 1:
        raise ValueError("--warmdown_frac and --ema_start_frac must lie in [0, 1]")
    if not 0 <= args.ema_decay < 1:
        raise ValueError("--ema_decay must lie in [0, 1)")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress(step: int, elapsed: float, args) -> float:
    """Fraction of the run done: the larger of the time and step fractions that apply."""
    fracs = []
    if args.train_budget_secs > 0:
        fracs.append(elapsed / args.train_budget_secs)
    if args.steps > 0:
        fracs.append(step / args.steps)
    return min(1.0, max(fracs))


def lr_multiplier(frac_done: float, warmdown_frac: float) -> float:
    if warmdown_frac <= 0:
        return 1.0
    return max(0.0, min(1.0, (1.0 - frac_done) / warmdown_frac))


def cdm_corrupt(x: torch.Tensor, vocab_size: int, gen: torch.Generator):
    """D3PM-uniform corruption on the device (no host sync): returns (noisy input, mask)."""
    lo, hi = MASK_RATE_RANGE
    rate = lo + (hi - lo) * torch.rand((), generator=gen, device=x.device)
    mask = torch.rand(x.shape, generator=gen, device=x.device) < rate
    noise = torch.randint(0, vocab_size, x.shape, generator=gen, device=x.device)
    return torch.where(mask, noise, x), mask


def causal_ce(model, x, y, autocast) -> torch.Tensor:
    with autocast:
        logits = model(x, is_causal=True)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


def train_step(model, x, y, *, cdm_weight: float, vocab_size: int, gen: torch.Generator, autocast,
               retro_alpha: float = 0.0):
    """Forward/backward of one step; gradients accumulate in .grad. Returns (ar_loss, cdm_loss|None).

    The backwards run one after the other, so each graph is freed before the next forward; the
    summed gradient is grad(AR) + cdm_weight * grad(CDM) [+ retro_alpha * grad(reversed AR)].
    The retrodiction term (SPEC §7, the earlier research line) is causal next-token loss on the
    time-reversed window: the model reads each row right to left and predicts the token before.
    """
    ar_loss = causal_ce(model, x, y, autocast)
    ar_loss.backward()
    if retro_alpha > 0:
        rev = torch.cat([x, y[:, -1:]], dim=1).flip(1)
        (retro_alpha * causal_ce(model, rev[:, :-1], rev[:, 1:], autocast)).backward()
    if cdm_weight <= 0:
        return ar_loss.detach(), None
    noisy, mask = cdm_corrupt(x, vocab_size, gen)
    with autocast:
        logits = model(noisy, is_causal=False)
    ce = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x.reshape(-1), reduction="none")
    maskf = mask.reshape(-1).float()
    cdm_loss = (ce * maskf).sum() / maskf.sum().clamp_min(1.0)
    (cdm_weight * cdm_loss).backward()
    return ar_loss.detach(), cdm_loss.detach()


def newest_step_checkpoint(ckpt_dir: Path) -> Path | None:
    steps = []
    for p in ckpt_dir.glob("step_*.pt"):
        tail = p.stem[len("step_"):]
        if tail.isdigit():
            steps.append((int(tail), p))
    return max(steps)[1] if steps else None


class Trainer:
    def __init__(self, args):
        self.args = args
        self.device = resolve_device(args.device)
        self.autocast = autocast_for(self.device)
        self.ckpt_dir = Path(args.checkpoint_dir)
        self.tokenizer_path = data_mod.resolve_tokenizer(args.data_dir, args.tokenizer_path)
        self.tables = data_mod.load_byte_tables(self.tokenizer_path)
        vocab = args.vocab_size or self.tables.vocab_size
        self.config = model_config(args, vocab)
        data_mod.check_vocab(args.data_dir, self.tables, self.tokenizer_path, vocab)
        self.stream = data_mod.TokenStream(args.data_dir, "train")
        data_mod.check_train_shards(args.data_dir, vocab)
        self.val_tokens = data_mod.load_validation(args.data_dir, args.val_tokens, vocab)
        seed_everything(args.seed)
        self.model = GPT(self.config).to(self.device)
        self.forward_model = torch.compile(self.model) if args.compile else self.model
        self.optimizers = build_optimizers(
            param_groups(self.model), muon_lr=args.muon_lr, embed_lr=args.embed_lr,
            scalar_lr=args.scalar_lr, muon_wd=args.muon_wd, adam_wd=args.adam_wd,
            fused=self.device.type == "cuda")
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(args.seed + 1)  # corruption stream, separate from init
        self.step, self.elapsed, self.tokens_seen = 0, 0.0, 0
        self.ema: dict[str, torch.Tensor] | None = None
        self.ema_steps = 0
        self.val_history: list[dict] = []

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {
            "config": self.config.to_dict(), "args": vars(self.args),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
            "stream": self.stream.state(), "step": self.step, "elapsed": self.elapsed,
            "tokens_seen": self.tokens_seen, "ema": self.ema, "ema_steps": self.ema_steps,
            "val_history": self.val_history,
        }

    def load_state(self, path: Path) -> None:
        payload = load_torch_checkpoint(path)
        if payload["config"] != self.config.to_dict():
            raise CheckpointError(f"{path}: checkpoint config {payload['config']} does not match the flags "
                                  f"({self.config.to_dict()})")
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
        self.stream.load_state(payload["stream"])
        self.step, self.elapsed = payload["step"], payload["elapsed"]
        self.tokens_seen, self.ema, self.ema_steps = payload["tokens_seen"], payload["ema"], payload["ema_steps"]
        self.val_history = payload["val_history"]

    # ------------------------------------------------------------------ pieces
    def set_lr(self, mult: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
                if "momentum" in group:
                    group["momentum"] = muon_momentum(self.step, warmup_steps=self.args.momentum_warmup_steps)

    def update_ema(self, frac_done: float) -> None:
        if self.args.ema_decay <= 0 or frac_done < self.args.ema_start_frac:
            return
        params = {k: v.detach().float() for k, v in self.model.state_dict().items()}
        if self.ema is None:
            self.ema = {k: v.clone() for k, v in params.items()}
        else:
            for k, v in params.items():
                self.ema[k].lerp_(v, 1.0 - self.args.ema_decay)
        self.ema_steps += 1

    def validate(self, log: RunLog) -> dict:
        t0 = time.perf_counter()
        res = ar_val_bpb(self.model, self.val_tokens, self.args.seq_len, self.args.val_batch_size,
                         self.device, self.tables)
        res = {"step": self.step, **res, "val_seconds": time.perf_counter() - t0}
        self.val_history.append(res)
        log.record("val", step=self.step, val_loss=res["val_loss"], val_bpb=res["val_bpb"],
                   val_tokens=res["val_tokens"], val_bytes=res["val_bytes"], train_time=self.elapsed)
        return res

    def save_step(self, name: str) -> None:
        save_torch_checkpoint(self.ckpt_dir / f"{name}.pt", self.state())

    # ------------------------------------------------------------------ loop
    def run(self) -> dict:
        args = self.args
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        resume_from = newest_step_checkpoint(self.ckpt_dir) if args.resume == "auto" else (
            Path(args.resume) if args.resume else None)
        log = RunLog(self.ckpt_dir, append=resume_from is not None)
        if resume_from is not None:
            self.load_state(resume_from)
            log.note(f"resumed_from:{resume_from} step:{self.step} elapsed:{self.elapsed:.1f}")
        batch = args.batch_tokens // args.seq_len
        log.note("config:" + json.dumps({"model": self.config.to_dict(), "args": vars(args),
                                          "device": str(self.device), "params": self.model.num_params(),
                                          "tokenizer": str(self.tokenizer_path)}, sort_keys=True))
        ema_text = (f"ema:on decay:{args.ema_decay} start_frac:{args.ema_start_frac}"
                    if args.ema_decay > 0 else "ema:off")
        passes = 1 + (args.cdm_weight > 0) + (args.retro_alpha > 0)
        log.note(f"{ema_text} cdm_weight:{args.cdm_weight} retro_alpha:{args.retro_alpha} passes_per_step:{passes}")
        total = str(args.steps) if args.steps > 0 else "budget"
        self.model.train()
        t_log, tok_log = time.perf_counter(), self.tokens_seen
        while True:
            frac = progress(self.step, self.elapsed, args)
            if frac >= 1.0:
                break
            t0 = time.perf_counter()
            self.set_lr(lr_multiplier(frac, args.warmdown_frac))
            x, y = self.stream.next_batch(batch, args.seq_len)
            x = torch.as_tensor(x, device=self.device)
            y = torch.as_tensor(y, device=self.device)
            ar_loss, cdm_loss = train_step(self.forward_model, x, y, cdm_weight=args.cdm_weight,
                                           vocab_size=self.config.vocab_size, gen=self.gen,
                                           autocast=self.autocast, retro_alpha=args.retro_alpha)
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.grad_clip)
            for opt in self.optimizers:
                opt.step()
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            self.step += 1
            self.tokens_seen += args.batch_tokens
            if self.device.type == "cuda" and (self.step % args.log_every == 0 or args.train_budget_secs > 0):
                torch.cuda.synchronize()  # honest wall-clock for the budget
            self.elapsed += time.perf_counter() - t0
            self.update_ema(progress(self.step, self.elapsed, args))
            last = progress(self.step, self.elapsed, args) >= 1.0
            if self.step % args.log_every == 0 or self.step == 1 or last:
                ar = float(ar_loss)
                cdm = float(cdm_loss) if cdm_loss is not None else None
                if not math.isfinite(ar) or (cdm is not None and not math.isfinite(cdm)):
                    raise FloatingPointError(f"non-finite loss at step {self.step} (ar {ar}, cdm {cdm}); "
                                             "the last step checkpoint is the last good state")
                now = time.perf_counter()
                tok_s = (self.tokens_seen - tok_log) / max(now - t_log, 1e-9)
                t_log, tok_log = now, self.tokens_seen
                frac_now = progress(self.step, self.elapsed, args)
                eta = self.elapsed * (1 - frac_now) / max(frac_now, 1e-9)
                fields = dict(step=f"{self.step}/{total}", train_loss=ar + args.cdm_weight * (cdm or 0.0),
                              ar_loss=ar)
                if cdm is not None:
                    fields["cdm_loss"] = cdm
                log.record("train", **fields, lr_mult=lr_multiplier(frac_now, args.warmdown_frac),
                           train_time=self.elapsed, tokens=self.tokens_seen, tok_s=tok_s, eta_s=eta)
            if args.val_every > 0 and self.step % args.val_every == 0 and not last:
                self.validate(log)
            if args.save_every > 0 and self.step % args.save_every == 0 and not last:
                self.save_step(f"step_{self.step}")
        return self.finish(log)

    def finish(self, log: RunLog) -> dict:
        args = self.args
        ema_used = self.ema is not None
        if ema_used:
            self.model.load_state_dict({k: v.to(self.model.state_dict()[k].dtype) for k, v in self.ema.items()})
        log.note(f"ema_used:{str(ema_used).lower()} ema_steps:{self.ema_steps}")
        final = self.validate(log)
        self.save_step("step_final")
        weights = state_dict_numpy(self.model)
        save_path = Path(args.save_path) if args.save_path else self.ckpt_dir / "final_model.npz"
        save_npz(save_path, weights, self.config.to_dict())
        artifact = self.ckpt_dir / "final_model.int6.lzma"
        artifact_bytes = save_int6_artifact(artifact, weights, self.config.to_dict())
        log.record("artifact", artifact_bytes=artifact_bytes, limit_bytes=ARTIFACT_LIMIT_BYTES,
                   fits=artifact_bytes <= ARTIFACT_LIMIT_BYTES)
        results = {
            "final_val_bpb": final["val_bpb"], "final_val_loss": final["val_loss"],
            "val_tokens": final["val_tokens"], "val_bytes": final["val_bytes"],
            "steps": self.step, "tokens_seen": self.tokens_seen, "train_seconds": self.elapsed,
            "config": {"model": self.config.to_dict(), "train": vars(args)},
            "params": self.model.num_params(), "cdm_weight": args.cdm_weight,
            "ema": {"enabled": args.ema_decay > 0, "used": ema_used, "steps": self.ema_steps},
            "val_history": self.val_history, "device": str(self.device),
            "npz": str(save_path), "artifact": str(artifact), "artifact_bytes": artifact_bytes,
            "git_commit": git_commit(REPO_ROOT), "versions": versions(),
        }
        atomic_write_bytes(self.ckpt_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
        log.record("final", step=self.step, final_val_bpb=final["val_bpb"], train_time=self.elapsed,
                   tokens=self.tokens_seen, results=str(self.ckpt_dir / "results.json"))
        log.close()
        return results


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        validate_args(args)
        Trainer(args).run()
    except (ValueError, OSError, CheckpointError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
