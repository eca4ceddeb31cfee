"""Joint causal (AR) + D3PM-uniform denoising (CDM) training in MLX: the twin of train_cdm.py.

Same flags, objective, schedule, logs and saves as train_cdm.py (whose argument parser,
validation, schedule and config helpers are imported, not copied):
  AR loss : causal next-token cross-entropy on (x, y)                         (weight 1)
  CDM loss: one mask rate r ~ U(0.15, 0.50) per step; each input position replaced with
            probability r by a uniform token; bidirectional forward on the noisy input;
            cross-entropy against the clean token at the same position, averaged over the
            corrupted positions                                               (weight cdm_weight)
  gradient = grad(AR + cdm_weight * CDM) = grad(AR) + cdm_weight * grad(CDM), plus
  retro_alpha * grad(reversed-window AR) with --retro_alpha > 0 (as train_cdm.train_step);
  `--cdm_weight 0` compiles a step without the denoising forward/backward.

MLX specifics:
- one compiled training step (mx.compile with inputs = outputs = [model.state,
  optimizer.state]): forward, backward, optional clipping and the optimizer update;
- Muon (optim_mlx.Muon, optim.Muon's math) on the block matrices, AdamW on embeddings and
  scalars; learning rates and momentum are state arrays updated by the schedule each step;
- parameters in float32; compute in bfloat16 on a GPU and float32 on the CPU (--dtype);
- seeds: --seed seeds mx.random (init), numpy, python and torch; the corruption noise comes from
  an explicit key, mx.random.key(seed + 1), split once per step (checkpointed, so a resumed run
  draws the same noise);
- step checkpoints step_<N>.safetensors / step_final.safetensors (weights, optimizer state,
  EMA, noise key, and the data position and counters as JSON metadata; see mlx_backend),
  resumable with --resume PATH or --resume auto; final_model.npz (the portable format that
  either backend loads) and the int6 artifact as in train_cdm.py.

    python train_cdm_mlx.py --data_dir DIR --train_budget_secs 540                 # Apple GPU, bf16
    python train_cdm_mlx.py --data_dir DIR --seq_len 64 --batch_tokens 1024 --steps 80 --device cpu
"""

from __future__ import annotations

import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as mlx_optim
import numpy as np
from mlx.utils import tree_flatten

import data as data_mod
from challenge_format import atomic_write_bytes
from checkpoint import ARTIFACT_LIMIT_BYTES, CheckpointError, save_int6_artifact, save_npz
from mlx_backend import (ar_val_bpb, cross_entropy, device_name, load_step_checkpoint, resolve_device,
                         resolve_dtype, save_step_checkpoint)
from model_mlx import GPT, load_state_numpy, param_groups, state_dict_numpy
from optim import muon_momentum
from optim_mlx import build_optimizer
from run_log import RunLog, git_commit, versions
from train_cdm import (MASK_RATE_RANGE, REPO_ROOT, lr_multiplier, model_config, progress, seed_everything,
                       validate_args)
from train_cdm import build_parser as build_torch_parser

_HELP_OVERRIDES = {
    "save_every": "step_<N>.safetensors every N steps; 0 = final only",
    "resume": "a step_*.safetensors, or 'auto' for the newest in CHECKPOINT_DIR",
    "device": "auto: MLX's default device; mps: the Apple GPU; cuda: an MLX CUDA build's GPU",
    "compile": "accepted for flag compatibility: the MLX training step is always compiled",
}


# Every flag of train_cdm's parser that this trainer implements. A flag added to train_cdm.py
# later is refused here (when set to a non-default value) until it is implemented in MLX too,
# instead of being accepted and silently ignored.
SUPPORTED_FLAGS = frozenset({
    "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "vocab_size", "bigram_dim", "xsa_last_n",
    "no_smear_gate", "no_unet_skips", "no_layer_scale", "no_resid_mix", "no_qk_norm",
    "cdm_weight", "retro_alpha", "train_budget_secs", "steps", "seq_len", "batch_tokens", "warmdown_frac",
    "muon_lr", "muon_wd", "embed_lr", "scalar_lr", "adam_wd", "momentum_warmup_steps", "grad_clip",
    "ema_decay", "ema_start_frac", "seed", "data_dir", "tokenizer_path", "checkpoint_dir", "save_path",
    "save_every", "val_every", "val_tokens", "val_batch_size", "log_every", "resume", "device", "compile",
    "dtype", "help",
})


def check_supported(parser, args) -> None:
    unsupported = [f"--{a.dest}" for a in parser._actions
                   if a.dest not in SUPPORTED_FLAGS and getattr(args, a.dest, a.default) != a.default]
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)}: not implemented by the MLX trainer (train_cdm_mlx.py)")


def build_parser():
    """train_cdm's parser (the same flags) with MLX help texts and --dtype."""
    p = build_torch_parser()
    p.description = __doc__
    for action in p._actions:
        if action.dest in _HELP_OVERRIDES:
            action.help = _HELP_OVERRIDES[action.dest]
    g = p.add_argument_group("mlx")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="compute dtype; auto: bfloat16 on a GPU, float32 on the CPU (weights stay float32)")
    return p


# ----------------------------------------------------------------------------- objective


def cdm_corrupt(x: mx.array, vocab_size: int, key: mx.array) -> tuple[mx.array, mx.array]:
    """D3PM-uniform corruption from an explicit key: (noisy input, mask). One rate per call."""
    k_rate, k_mask, k_noise = mx.random.split(key, 3)
    lo, hi = MASK_RATE_RANGE
    rate = lo + (hi - lo) * mx.random.uniform(key=k_rate)
    mask = mx.random.uniform(shape=x.shape, key=k_mask) < rate
    noise = mx.random.randint(0, vocab_size, x.shape, dtype=x.dtype, key=k_noise)
    return mx.where(mask, noise, x), mask


def ar_loss(model: GPT, x: mx.array, y: mx.array) -> mx.array:
    """Causal next-token cross-entropy, mean over all B*T targets."""
    return mx.mean(cross_entropy(model(x, is_causal=True), y))


def retro_loss(model: GPT, x: mx.array, y: mx.array) -> mx.array:
    """Causal cross-entropy on the time-reversed window (train_cdm.train_step's retro_alpha term):
    the model reads each row right to left and predicts the token before."""
    rev = mx.concatenate([x, y[:, -1:]], axis=1)[:, ::-1]
    return ar_loss(model, rev[:, :-1], rev[:, 1:])


def cdm_loss(model: GPT, noisy: mx.array, clean: mx.array, mask: mx.array) -> mx.array:
    """Bidirectional in-place cross-entropy against the clean tokens, mean over corrupted positions."""
    ce = cross_entropy(model(noisy, is_causal=False), clean)
    m = mask.astype(mx.float32)
    return mx.sum(ce * m) / mx.maximum(mx.sum(m), 1.0)


def joint_loss(model: GPT, x, y, noisy=None, mask=None, *, cdm_weight: float, retro_alpha: float = 0.0):
    """(total, AR) or, with cdm_weight > 0, (total, AR, CDM); the gradient is taken of total =
    AR [+ retro_alpha * reversed AR] [+ cdm_weight * CDM], the sum of train_cdm's backwards.
    With cdm_weight == 0 the denoising forward is not in the graph at all."""
    ar = ar_loss(model, x, y)
    total = ar
    if retro_alpha > 0:
        total = total + retro_alpha * retro_loss(model, x, y)
    if cdm_weight <= 0:
        return total, ar
    cdm = cdm_loss(model, noisy, x, mask)
    return total + cdm_weight * cdm, ar, cdm


def make_train_step(model: GPT, optimizer, *, cdm_weight: float, retro_alpha: float = 0.0,
                    grad_clip: float = 0.0):
    """The compiled step. cdm_weight > 0: step(x, y, noisy, mask) -> (ar, cdm);
    cdm_weight == 0: step(x, y) -> (ar,) with no denoising pass in the graph at all.

    Build it after the optimizer state is final (initialized or restored): the state trees are
    captured here as the step's explicit inputs and outputs.
    """
    loss_and_grad = nn.value_and_grad(model, partial(joint_loss, cdm_weight=cdm_weight, retro_alpha=retro_alpha))
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(*batch):
        values, grads = loss_and_grad(model, *batch)
        if grad_clip > 0:
            grads, _ = mlx_optim.clip_grad_norm(grads, grad_clip)
        optimizer.update(model, grads)
        return values[1:]

    return step


def newest_step_checkpoint(ckpt_dir: Path) -> Path | None:
    steps = []
    for p in ckpt_dir.glob("step_*.safetensors"):
        tail = p.name[len("step_"):-len(".safetensors")]
        if tail.isdigit():
            steps.append((int(tail), p))
    return max(steps)[1] if steps else None


# ----------------------------------------------------------------------------- trainer


class Trainer:
    def __init__(self, args):
        self.args = args
        self.device = resolve_device(args.device)
        mx.set_default_device(self.device)
        self.dtype = resolve_dtype(args.dtype, self.device)
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
        mx.random.seed(args.seed)
        self.model = GPT(self.config, compute_dtype=self.dtype)
        mx.eval(self.model.parameters())
        self.optimizer = build_optimizer(
            param_groups(self.model), muon_lr=args.muon_lr, embed_lr=args.embed_lr, scalar_lr=args.scalar_lr,
            muon_wd=args.muon_wd, adam_wd=args.adam_wd, ns_dtype=self.dtype)
        self.optimizer.check_covers(self.model.parameters())
        self.optimizer.init(self.model.trainable_parameters())
        self.cdm_key = mx.random.key(args.seed + 1)  # corruption stream, separate from init
        self.step, self.elapsed, self.tokens_seen = 0, 0.0, 0
        self.ema: dict[str, mx.array] | None = None
        self.ema_steps = 0
        self.val_history: list[dict] = []

    # ------------------------------------------------------------------ state
    def save_step(self, name: str) -> None:
        state = {
            "config": self.config.to_dict(), "args": vars(self.args), "backend": "mlx",
            "stream": self.stream.state(), "step": self.step, "elapsed": self.elapsed,
            "tokens_seen": self.tokens_seen, "ema_steps": self.ema_steps, "val_history": self.val_history,
        }
        save_step_checkpoint(self.ckpt_dir / f"{name}.safetensors",
                             model_weights=dict(tree_flatten(self.model.parameters())),
                             optimizer_state=self.optimizer.state, state=state, ema=self.ema,
                             cdm_key=self.cdm_key)

    def load_state(self, path: Path) -> None:
        ckpt = load_step_checkpoint(path)
        state = ckpt["state"]
        if state["config"] != self.config.to_dict():
            raise CheckpointError(f"{path}: checkpoint config {state['config']} does not match the flags "
                                  f"({self.config.to_dict()})")
        load_state_numpy(self.model, {k: np.array(v) for k, v in ckpt["model"].items()})
        if ckpt["optimizer"] is None or ckpt["cdm_key"] is None:
            raise CheckpointError(f"{path}: no optimizer state or noise key (not a step checkpoint)")
        try:
            self.optimizer.state = ckpt["optimizer"]
        except ValueError as e:
            raise CheckpointError(f"{path}: optimizer state does not fit ({e})") from None
        self.optimizer.init(self.model.trainable_parameters())
        self.cdm_key = ckpt["cdm_key"]
        self.stream.load_state(state["stream"])
        self.step, self.elapsed = state["step"], state["elapsed"]
        self.tokens_seen, self.ema_steps = state["tokens_seen"], state["ema_steps"]
        self.ema = ckpt["ema"]
        self.val_history = state["val_history"]

    # ------------------------------------------------------------------ pieces
    def update_ema(self, frac_done: float) -> None:
        if self.args.ema_decay <= 0 or frac_done < self.args.ema_start_frac:
            return
        params = dict(tree_flatten(self.model.parameters()))
        if self.ema is None:
            self.ema = {k: mx.array(v) for k, v in params.items()}
        else:
            w = 1.0 - self.args.ema_decay
            self.ema = {k: e + w * (params[k] - e) for k, e in self.ema.items()}
        mx.eval(self.ema)
        self.ema_steps += 1

    def validate(self, log: RunLog) -> dict:
        t0 = time.perf_counter()
        res = ar_val_bpb(self.model, self.val_tokens, self.args.seq_len, self.args.val_batch_size, self.tables)
        res = {"step": self.step, **res, "val_seconds": time.perf_counter() - t0}
        self.val_history.append(res)
        log.record("val", step=self.step, val_loss=res["val_loss"], val_bpb=res["val_bpb"],
                   val_tokens=res["val_tokens"], val_bytes=res["val_bytes"], train_time=self.elapsed)
        return res

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
                                          "device": device_name(self.device), "backend": "mlx",
                                          "dtype": str(self.dtype), "params": self.model.num_params(),
                                          "tokenizer": str(self.tokenizer_path)}, sort_keys=True))
        ema_text = (f"ema:on decay:{args.ema_decay} start_frac:{args.ema_start_frac}"
                    if args.ema_decay > 0 else "ema:off")
        passes = 1 + (args.cdm_weight > 0) + (args.retro_alpha > 0)
        log.note(f"{ema_text} cdm_weight:{args.cdm_weight} retro_alpha:{args.retro_alpha} passes_per_step:{passes}")
        total = str(args.steps) if args.steps > 0 else "budget"
        vocab = self.config.vocab_size
        train_step = make_train_step(self.model, self.optimizer, cdm_weight=args.cdm_weight,
                                     retro_alpha=args.retro_alpha, grad_clip=args.grad_clip)
        self.model.train()
        t_log, tok_log = time.perf_counter(), self.tokens_seen
        while True:
            frac = progress(self.step, self.elapsed, args)
            if frac >= 1.0:
                break
            t0 = time.perf_counter()
            self.optimizer.set_schedule(lr_multiplier(frac, args.warmdown_frac),
                                        muon_momentum(self.step, warmup_steps=args.momentum_warmup_steps))
            x, y = self.stream.next_batch(batch, args.seq_len)
            x, y = mx.array(x.astype(np.int32)), mx.array(y.astype(np.int32))
            if args.cdm_weight > 0:
                self.cdm_key, step_key = mx.random.split(self.cdm_key)
                noisy, mask = cdm_corrupt(x, vocab, step_key)
                ar_loss_v, cdm_loss_v = train_step(x, y, noisy, mask)
            else:
                (ar_loss_v,), cdm_loss_v = train_step(x, y), None
            # Evaluating the state every step ends the lazy graph and makes the wall-clock honest.
            losses = [ar_loss_v] if cdm_loss_v is None else [ar_loss_v, cdm_loss_v]
            mx.eval(losses, self.cdm_key, self.model.state, self.optimizer.state)
            self.step += 1
            self.tokens_seen += args.batch_tokens
            self.elapsed += time.perf_counter() - t0
            self.update_ema(progress(self.step, self.elapsed, args))
            last = progress(self.step, self.elapsed, args) >= 1.0
            if self.step % args.log_every == 0 or self.step == 1 or last:
                ar = float(ar_loss_v.item())
                cdm = float(cdm_loss_v.item()) if cdm_loss_v is not None else None
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
            load_state_numpy(self.model, {k: np.array(v) for k, v in self.ema.items()})
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
            "val_history": self.val_history, "device": device_name(self.device),
            "npz": str(save_path), "artifact": str(artifact), "artifact_bytes": artifact_bytes,
            "git_commit": git_commit(REPO_ROOT), "versions": versions(),
            "backend": "mlx", "dtype": str(self.dtype),
        }
        atomic_write_bytes(self.ckpt_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
        log.record("final", step=self.step, final_val_bpb=final["val_bpb"], train_time=self.elapsed,
                   tokens=self.tokens_seen, results=str(self.ckpt_dir / "results.json"))
        log.close()
        return results


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_supported(parser, args)
        validate_args(args)
        Trainer(args).run()
    except (ValueError, OSError, CheckpointError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
