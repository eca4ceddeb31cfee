"""Optimizers of the original recipe (METHOD.md §4): Muon for the matrices, Adam for the rest.

Muon, per matrix: the gradient is clipped to Frobenius norm `clip` (0.3) BEFORE it enters the
momentum; Nesterov momentum; the update is replaced by an approximately orthogonal matrix with the
same row/column spaces (5 quintic Newton-Schulz steps, in float32 on every device as in the
original), scaled by sqrt(max(1, rows/cols)) so that tall matrices get the same per-element step
size as square ones; decoupled weight decay.
"""

from __future__ import annotations

import torch

# Re-exported for the torch trainer and tests.
from meadow_golf.train.optim_common import NS_COEFFS, muon_momentum  # noqa: F401


def newton_schulz_orthogonalize(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximate U V^T of g = U S V^T with the quintic iteration X <- aX + (bA + cA^2)X, A = XX^T.

    The coefficients push every singular value into roughly [0.7, 1.2] in 5 steps rather than
    converging exactly; that is all Muon needs. Works on the smaller Gram matrix side.
    The iteration runs in float32 on every device: the original casts to float32 before it and
    runs its optimizer outside autocast, so its Newton-Schulz was float32 on the GPU too.
    g may be a stack (S, m, n) of same-shape matrices: each is orthogonalized on its own.
    """
    if g.ndim not in (2, 3):
        raise ValueError(f"Muon orthogonalizes 2-D matrices (or a stack of them), got shape {tuple(g.shape)}")
    a, b, c = NS_COEFFS
    x = g.to(torch.float32)
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    norm = x.norm() if x.ndim == 2 else torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
    x = x / (norm + eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    if transposed:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon with per-matrix gradient clipping, Nesterov momentum and decoupled weight decay;
    `momentum` may be changed per step. clip = 0 turns the clipping off."""

    def __init__(self, params, lr: float = 0.025, momentum: float = 0.92, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.04, clip: float = 0.3, batched: bool = False):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        weight_decay=weight_decay, clip=clip)
        super().__init__(params, defaults)
        # batched: one stacked Newton-Schulz per shape instead of one per matrix (far fewer kernel
        # launches on a GPU; the same math, equal up to float rounding).
        self.batched = batched

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            momenta = [self._momentum(p, group) for p in params]
            if self.batched:
                by_shape: dict[tuple, list[int]] = {}
                for i, p in enumerate(params):
                    by_shape.setdefault(tuple(p.shape), []).append(i)
                updates: list = [None] * len(params)
                for idx in by_shape.values():
                    ortho = newton_schulz_orthogonalize(torch.stack([momenta[i] for i in idx]), steps=group["ns_steps"])
                    for j, i in enumerate(idx):
                        updates[i] = ortho[j]
            else:
                updates = [newton_schulz_orthogonalize(m, steps=group["ns_steps"]) for m in momenta]
            for p, update in zip(params, updates):
                update = update * max(1.0, p.size(0) / p.size(1)) ** 0.5
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(update, alpha=-lr)
        return loss

    def _momentum(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """Clip p.grad, update the momentum buffer with it; return the (Nesterov) momentum to orthogonalize."""
        g, mom = clip_matrix_grad(p.grad, group["clip"]), group["momentum"]
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(g)
        buf = state["momentum_buffer"]
        buf.mul_(mom).add_(g)
        return g.add(buf, alpha=mom) if group["nesterov"] else buf


def clip_matrix_grad(g: torch.Tensor, clip: float) -> torch.Tensor:
    """g * clip / (||g||_F + 1e-8) when ||g||_F > clip (strictly), else g itself (the original's rule).

    Written without a host sync: the unclipped case multiplies by exactly 1.0."""
    if clip <= 0:
        return g
    norm = g.norm()
    return g * torch.where(norm > clip, clip / (norm + 1e-8), torch.ones_like(norm))


def build_optimizers(groups: dict, *, muon_lr: float = 0.025, embed_lr: float = 0.035,
                     scalar_lr: float = 0.025, muon_wd: float = 0.04, adam_wd: float = 0.0,
                     muon_clip: float = 0.3, betas=(0.9, 0.95), fused: bool = False) -> list[torch.optim.Optimizer]:
    """One Muon over the matrices, one AdamW with two groups (the token embedding, scalars).

    fused=True (on CUDA): fused AdamW and Muon's stacked Newton-Schulz per shape; the plain
    per-tensor loops elsewhere (the CPU record's exact arithmetic).

    `groups` is model.param_groups(model): {"muon": [(name, p)], "embed": [...], "scalar": [...]}.
    Each param group records its base lr under "base_lr" so the schedule can scale it.
    """
    opts: list[torch.optim.Optimizer] = []
    muon_params = [p for _, p in groups["muon"]]
    if muon_params:
        opts.append(Muon(muon_params, lr=muon_lr, weight_decay=muon_wd, clip=muon_clip, batched=fused))
    adam_groups = [
        {"params": [p for _, p in groups["embed"]], "lr": embed_lr},
        {"params": [p for _, p in groups["scalar"]], "lr": scalar_lr},
    ]
    adam_groups = [g for g in adam_groups if g["params"]]
    if adam_groups:
        kwargs = {"fused": True} if fused else {}
        opts.append(torch.optim.AdamW(adam_groups, betas=betas, eps=1e-8, weight_decay=adam_wd, **kwargs))
    for opt in opts:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return opts
