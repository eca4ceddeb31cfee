"""The torch-free half of the optimizer recipe (METHOD.md §4), shared by optim.py (PyTorch) and
optim_mlx.py (MLX): the Newton-Schulz coefficients and the Muon momentum warmup.

Apart from optim.py so that the MLX trainer imports no torch (a Mac install without torch);
optim.py re-exports both names.
"""

from __future__ import annotations

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def muon_momentum(step: int, start: float = 0.92, end: float = 0.99, warmup_steps: int = 1500) -> float:
    """Momentum warmed linearly from `start` to `end` over the first `warmup_steps` steps."""
    frac = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
    return start + (end - start) * frac
