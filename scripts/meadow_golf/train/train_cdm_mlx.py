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

import sys
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as mlx_optim
import numpy as np
from mlx.utils import tree_flatten

from meadow_golf.model.checkpoint import CheckpointError
from meadow_golf.eval.mlx_backend import (ar_val_bpb, cross_entropy, device_name, load_step_checkpoint, resolve_device,
                                     resolve_dtype, save_step_checkpoint)
from meadow_golf.model.gpt_mlx import GPT, load_state_numpy, param_groups, state_dict_numpy
from meadow_golf.train.optim_mlx import build_optimizer
from meadow_golf.model.noise import check_noise_fits, corrupt_mlx
from meadow_golf.train.core import TrainerBase
from meadow_golf.train.flags import build_parser as build_core_parser
from meadow_golf.train.flags import validate_args
from meadow_golf.train.run_folder import launched_by_torchrun

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
    "cdm_weight", "noise", "cdm_loss", "retro_alpha", "train_budget_secs", "steps", "seq_len", "batch_tokens",
    "warmdown_steps", "warmdown_secs", "muon_lr", "muon_wd", "muon_clip", "embed_lr", "scalar_lr",
    "adam_wd", "momentum_warmup_steps", "grad_clip", "ema_decay", "ema_start_step", "clock", "seed", "data_dir", "tokenizer_path", "checkpoint_dir", "save_path",
    "save_every", "val_every", "val_tokens", "val_batch_size", "log_every", "log_every_secs", "resume", "overwrite", "device",
    "compile",
    "dtype", "help",
})


def check_supported(parser, args) -> None:
    unsupported = [f"--{a.dest}" for a in parser._actions
                   if a.dest not in SUPPORTED_FLAGS and getattr(args, a.dest, a.default) != a.default]
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)}: not implemented by the MLX trainer (train_cdm_mlx.py)")
    if launched_by_torchrun():
        raise ValueError("the MLX trainer runs one process; multi-process training (torchrun) is torch only")


def build_parser():
    """train_cdm's parser (the same flags) with MLX help texts and --dtype."""
    p = build_core_parser(__doc__)
    for action in p._actions:
        if action.dest in _HELP_OVERRIDES:
            action.help = _HELP_OVERRIDES[action.dest]
    g = p.add_argument_group("mlx")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="compute dtype; auto: bfloat16 on a GPU, float32 on the CPU (weights stay float32)")
    return p


# ----------------------------------------------------------------------------- objective


def ar_loss(model: GPT, x: mx.array, y: mx.array) -> mx.array:
    """Causal next-token cross-entropy, mean over all B*T targets."""
    return mx.mean(cross_entropy(model(x, is_causal=True), y))


def retro_loss(model: GPT, x: mx.array, y: mx.array) -> mx.array:
    """Causal cross-entropy on the time-reversed window (train_cdm.train_step's retro_alpha term):
    the model reads each row right to left and predicts the token before."""
    rev = mx.concatenate([x, y[:, -1:]], axis=1)[:, ::-1]
    return ar_loss(model, rev[:, :-1], rev[:, 1:])


def cdm_loss(model: GPT, noisy: mx.array, clean: mx.array, mask: mx.array, loss: str = "plain") -> mx.array:
    """Bidirectional in-place cross-entropy against the clean tokens. plain: mean over corrupted
    positions (mask is bool); elbo: sum of CE * weight (mask = noise.corrupt_mlx's mask / t) over B*T."""
    ce = cross_entropy(model(noisy, is_causal=False), clean)
    m = mask.astype(mx.float32)
    if loss == "elbo":
        return mx.sum(ce * m) / ce.size
    return mx.sum(ce * m) / mx.maximum(mx.sum(m), 1.0)


def joint_loss(model: GPT, x, y, noisy=None, mask=None, *, cdm_weight: float, retro_alpha: float = 0.0,
               loss: str = "plain"):
    """(total, AR) or, with cdm_weight > 0, (total, AR, CDM); the gradient is taken of total =
    AR [+ retro_alpha * reversed AR] [+ cdm_weight * CDM], the sum of train_cdm's backwards.
    With cdm_weight == 0 the denoising forward is not in the graph at all."""
    ar = ar_loss(model, x, y)
    total = ar
    if retro_alpha > 0:
        total = total + retro_alpha * retro_loss(model, x, y)
    if cdm_weight <= 0:
        return total, ar
    cdm = cdm_loss(model, noisy, x, mask, loss)
    return total + cdm_weight * cdm, ar, cdm


def make_train_step(model: GPT, optimizer, *, cdm_weight: float, retro_alpha: float = 0.0,
                    grad_clip: float = 0.0, loss: str = "plain"):
    """The compiled step. cdm_weight > 0: step(x, y, noisy, mask) -> (ar, cdm);
    cdm_weight == 0: step(x, y) -> (ar,) with no denoising pass in the graph at all.

    Build it after the optimizer state is final (initialized or restored): the state trees are
    captured here as the step's explicit inputs and outputs.
    """
    loss_and_grad = nn.value_and_grad(model, partial(joint_loss, cdm_weight=cdm_weight, retro_alpha=retro_alpha,
                                                     loss=loss))
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(*batch):
        values, grads = loss_and_grad(model, *batch)
        if grad_clip > 0:
            grads, _ = mlx_optim.clip_grad_norm(grads, grad_clip)
        optimizer.update(model, grads)
        return values[1:]

    return step


def run_step(step_fn, model: GPT, optimizer, x: np.ndarray, y: np.ndarray, key: mx.array, *, cdm_weight: float,
             noise: str = "uniform", loss: str = "plain"):
    """One training step on numpy batches (the trainer's and benchmark.py's): -> (ar, cdm | None, next key).

    Evaluating the state every step ends the lazy graph and makes the wall-clock honest.
    """
    x, y = mx.array(x.astype(np.int32)), mx.array(y.astype(np.int32))
    if cdm_weight > 0:
        key, step_key = mx.random.split(key)
        noisy, mask = corrupt_mlx(x, model.config.vocab_size, step_key, noise=noise, loss=loss)
        ar_v, cdm_v = step_fn(x, y, noisy, mask)
    else:
        (ar_v,), cdm_v = step_fn(x, y), None
    mx.eval([ar_v] if cdm_v is None else [ar_v, cdm_v], key, model.state, optimizer.state)
    return ar_v, cdm_v, key


def ema_step(ema: dict | None, model: GPT, decay: float) -> dict:
    """The original's EMA: a copy of the weights when ema is None, else ema * decay + weights * (1 - decay)."""
    params = dict(tree_flatten(model.parameters()))
    if ema is None:
        ema = {k: mx.array(v) for k, v in params.items()}
    else:
        ema = {k: e * decay + params[k] * (1.0 - decay) for k, e in ema.items()}
    mx.eval(ema)
    return ema


# ----------------------------------------------------------------------------- trainer


class Trainer(TrainerBase):
    """The MLX backend of core.TrainerBase."""

    backend = "mlx"
    checkpoint_suffix = ".safetensors"

    def __init__(self, args):
        super().__init__(args)
        self.device = resolve_device(args.device)
        mx.set_default_device(self.device)
        self.dtype = resolve_dtype(args.dtype, self.device)
        mx.random.seed(args.seed)
        self.model = GPT(self.config, compute_dtype=self.dtype)
        check_noise_fits(self.config, args.noise)
        mx.eval(self.model.parameters())
        self.optimizer = build_optimizer(
            param_groups(self.model), muon_lr=args.muon_lr, embed_lr=args.embed_lr, scalar_lr=args.scalar_lr,
            muon_wd=args.muon_wd, adam_wd=args.adam_wd, muon_clip=args.muon_clip)
        self.optimizer.check_covers(self.model.parameters())
        self.optimizer.init(self.model.trainable_parameters())
        self.cdm_key = mx.random.key(args.seed + 1)  # corruption stream, separate from init
        self._step_fn = None  # compiled on first use, after a resume has restored the optimizer state
        self.model.train()

    # ------------------------------------------------------------------ hooks
    def device_name(self) -> str:
        return device_name(self.device)

    def num_params(self) -> int:
        return self.model.num_params()

    def extra_results(self) -> dict:
        return {"dtype": str(self.dtype)}

    def set_schedule(self, lr_mult: float, momentum: float) -> None:
        self.optimizer.set_schedule(lr_mult, momentum)

    def train_step(self, x: np.ndarray, y: np.ndarray):
        args = self.args
        if self._step_fn is None:
            self._step_fn = make_train_step(self.model, self.optimizer, cdm_weight=args.cdm_weight,
                                            retro_alpha=args.retro_alpha, grad_clip=args.grad_clip,
                                            loss=args.cdm_loss)
        ar_v, cdm_v, self.cdm_key = run_step(self._step_fn, self.model, self.optimizer, x, y, self.cdm_key,
                                             cdm_weight=args.cdm_weight, noise=args.noise, loss=args.cdm_loss)
        return ar_v, cdm_v

    def scalar(self, value) -> float:
        return float(value.item())

    def ema_update(self, decay: float) -> None:
        self.ema = ema_step(self.ema, self.model, decay)

    def load_ema(self) -> None:
        load_state_numpy(self.model, {k: np.array(v) for k, v in self.ema.items()})

    def swap_in_ema(self):
        raw = state_dict_numpy(self.model)
        self.load_ema()
        return raw

    def restore_weights(self, token) -> None:
        load_state_numpy(self.model, token)

    def val_bpb(self) -> dict:
        return ar_val_bpb(self.model, self.val_tokens, self.args.seq_len, self.args.val_batch_size, self.tables)

    def weights_numpy(self) -> dict:
        return state_dict_numpy(self.model)

    def save_step(self, name: str) -> None:
        save_step_checkpoint(self.ckpt_dir / f"{name}.safetensors",
                             model_weights=dict(tree_flatten(self.model.parameters())),
                             optimizer_state=self.optimizer.state, state=self.counters(), ema=self.ema,
                             cdm_key=self.cdm_key)

    def load_state(self, path: Path) -> None:
        ckpt = load_step_checkpoint(path)
        self.check_resume(path, ckpt["state"])
        load_state_numpy(self.model, {k: np.array(v) for k, v in ckpt["model"].items()})
        if ckpt["optimizer"] is None or ckpt["cdm_key"] is None:
            raise CheckpointError(f"{path}: no optimizer state or noise key (not a step checkpoint)")
        try:
            self.optimizer.state = ckpt["optimizer"]
        except ValueError as e:
            raise CheckpointError(f"{path}: optimizer state does not fit ({e})") from None
        self.optimizer.init(self.model.trainable_parameters())
        self.cdm_key = ckpt["cdm_key"]
        self.load_counters(ckpt["state"])
        self.ema = ckpt["ema"]


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
