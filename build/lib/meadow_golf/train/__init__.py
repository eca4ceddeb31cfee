"""The training floor: one trainer core, a torch and an MLX step, optimizers, torchrun / DDP."""
