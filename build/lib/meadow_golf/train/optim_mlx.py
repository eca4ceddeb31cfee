"""The optimizers of METHOD.md §4 for MLX, with the math of optim.py / torch.optim.AdamW.

Muon is written here because mlx.optimizers.Muon differs from optim.Muon: it folds weight decay
into the gradient (coupled, p -= lr*wd*p through the orthogonalization) and keeps an EMA
momentum (v = mom*v + (1-mom)*g). This one matches optim.Muon exactly:
    g      = g * clip / (||g||_F + 1e-8)       (only when ||g||_F > clip: per-matrix clipping)
    buf    = mom * buf + g
    update = g + mom * buf                      (Nesterov; buf without it)
    update = NS5(update) * sqrt(max(1, rows / cols))
    p      = p * (1 - lr * wd) - lr * update    (decoupled weight decay)
with NS5 the quintic Newton-Schulz iteration of optim.newton_schulz_orthogonalize (same
coefficients, same Gram side, x / (||x||_F + 1e-7), float32 by default as in torch).

Adam is mlx.optimizers.AdamW with bias_correction=True, which is torch.optim.AdamW's update:
p *= 1 - lr*wd; m, v EMAs; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).

Learning rates and the Muon momentum live in the optimizer state as arrays, so the schedule
changes them between steps without recompiling the compiled training step.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.optimizers as mlx_optim
from mlx.utils import tree_flatten

from meadow_golf.train.optim_common import NS_COEFFS

ADAM_BETAS = (0.9, 0.95)
ADAM_EPS = 1e-8


def newton_schulz_orthogonalize(g: mx.array, steps: int = 5, eps: float = 1e-7, dtype=mx.float32) -> mx.array:
    """Approximate U V^T of g = U S V^T: X <- aX + (bA + cA^2)X with A = XX^T on the smaller side."""
    if g.ndim != 2:
        raise ValueError(f"Muon orthogonalizes 2-D matrices, got shape {tuple(g.shape)}")
    a, b, c = NS_COEFFS
    x = g.astype(dtype)
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    norm = mx.sqrt(mx.sum(mx.square(x.astype(mx.float32)))).astype(dtype)
    x = x / (norm + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    if transposed:
        x = x.T
    return x.astype(g.dtype)


class Muon(mlx_optim.Optimizer):
    """Muon with Nesterov momentum and decoupled weight decay (optim.Muon's math).

    `momentum` and `learning_rate` are state arrays: assign new floats between steps.
    `ns_dtype` is the precision of the Newton-Schulz iteration (bfloat16 on the GPU, as on CUDA).
    """

    def __init__(self, learning_rate: float = 0.025, momentum: float = 0.92, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.04, clip: float = 0.3, ns_dtype=mx.float32):
        super().__init__()
        self.clip = clip
        self._maybe_schedule("learning_rate", learning_rate)
        self.momentum = momentum
        self.nesterov = nesterov
        self.ns_steps = ns_steps
        self.weight_decay = weight_decay
        self.ns_dtype = ns_dtype

    @property
    def momentum(self) -> mx.array:
        return self.state["momentum"]

    @momentum.setter
    def momentum(self, value) -> None:
        self.state["momentum"] = mx.array(value, dtype=mx.float32)

    def init_single(self, parameter: mx.array, state: dict) -> None:
        state["momentum_buffer"] = mx.zeros_like(parameter)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict) -> mx.array:
        lr = self.learning_rate.astype(gradient.dtype)
        mom = self.momentum.astype(gradient.dtype)
        if self.clip > 0:
            norm = mx.sqrt(mx.sum(mx.square(gradient.astype(mx.float32)))).astype(gradient.dtype)
            gradient = gradient * mx.where(norm > self.clip, self.clip / (norm + 1e-8), 1.0).astype(gradient.dtype)
        buf = mom * state["momentum_buffer"] + gradient
        state["momentum_buffer"] = buf
        update = gradient + mom * buf if self.nesterov else buf
        update = newton_schulz_orthogonalize(update, steps=self.ns_steps, dtype=self.ns_dtype)
        update = update * max(1.0, parameter.shape[0] / parameter.shape[1]) ** 0.5
        if self.weight_decay:
            parameter = parameter * (1.0 - lr * self.weight_decay)
        return parameter - lr * update


class GroupedOptimizer(mlx_optim.MultiOptimizer):
    """Muon on the "muon" names, AdamW(embed_lr) on "embed", AdamW(scalar_lr) on "scalar".

    The MLX counterpart of optim.build_optimizers' list of torch optimizers. `groups` maps the
    group name to flat parameter names (model_mlx.param_groups); every parameter must be in
    exactly one group. `base_lrs` holds each sub-optimizer's base learning rate.
    """

    def __init__(self, groups: dict[str, list[str]], *, muon_lr: float = 0.025, embed_lr: float = 0.035,
                 scalar_lr: float = 0.025, muon_wd: float = 0.04, adam_wd: float = 0.0,
                 muon_clip: float = 0.3, betas=ADAM_BETAS, ns_dtype=mx.float32):
        names = [n for key in ("muon", "embed", "scalar") for n in groups.get(key, [])]
        if len(names) != len(set(names)):
            raise ValueError("a parameter is in more than one optimizer group")
        specs = []
        if groups.get("muon"):
            specs.append(("muon", Muon(learning_rate=muon_lr, weight_decay=muon_wd, clip=muon_clip, ns_dtype=ns_dtype),
                          muon_lr))
        for key, lr in (("embed", embed_lr), ("scalar", scalar_lr)):
            if groups.get(key):
                adam = mlx_optim.AdamW(learning_rate=lr, betas=list(betas), eps=ADAM_EPS, weight_decay=adam_wd,
                                   bias_correction=True)
                specs.append((key, adam, lr))
        if not specs:
            raise ValueError("no parameters to optimize")
        member = [frozenset(groups[key]) for key, _, _ in specs]
        filters = [lambda path, _, m=m: path in m for m in member[:-1]]
        super().__init__([opt for _, opt, _ in specs], filters)
        self.group_names = [key for key, _, _ in specs]
        self.base_lrs = [lr for _, _, lr in specs]
        self._all_names = frozenset(names)

    @property
    def muon(self) -> Muon | None:
        return self.optimizers[0] if self.group_names[0] == "muon" else None

    def check_covers(self, parameters: dict) -> None:
        """Every parameter of the tree belongs to a group (the last sub-optimizer is MultiOptimizer's
        catch-all, so a forgotten name would otherwise silently land there)."""
        stray = sorted(set(name for name, _ in tree_flatten(parameters)) - self._all_names)
        if stray:
            raise ValueError(f"parameters outside every optimizer group: {stray}")

    def set_schedule(self, lr_mult: float, momentum: float | None = None) -> None:
        """lr = base_lr * lr_mult for every group; Muon's momentum if given."""
        for opt, base in zip(self.optimizers, self.base_lrs):
            opt.learning_rate = base * lr_mult
        if momentum is not None and self.muon is not None:
            self.muon.momentum = momentum


def build_optimizer(groups: dict[str, list[str]], **kwargs) -> GroupedOptimizer:
    """optim.build_optimizers for MLX: one optimizer object over all groups (see GroupedOptimizer)."""
    return GroupedOptimizer(groups, **kwargs)
