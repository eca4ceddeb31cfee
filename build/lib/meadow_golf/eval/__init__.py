"""The evaluation floor: backend-independent decoders, the ELBO, audits, and the torch / MLX scoring backends."""
