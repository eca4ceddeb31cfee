"""The model floor: GPTConfig, the torch GPT and its MLX twin (same flat parameter names), checkpoint files."""
