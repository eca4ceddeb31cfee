"""The model floor: GPTConfig and its parameter shapes, the denoising noise, the torch GPT and its MLX twin
(same flat parameter names), checkpoint files."""
