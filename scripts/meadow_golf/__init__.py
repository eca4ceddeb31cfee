"""meadow_golf: the code every dated experiment shares (importing the package imports nothing else).

Model and training
    model_config   GPTConfig and the constants both frameworks share (no torch, no mlx)
    model          the PyTorch GPT: one set of weights, a causal and a bidirectional pass
    model_mlx      its MLX twin (imports no torch)
    optim_common   Muon's Newton-Schulz coefficients and momentum schedule (no torch, no mlx)
    optim, optim_mlx   Muon + Adam for torch / for MLX
    trainer_core   the backend-independent training driver: flags, schedule, EMA, saves, results
    train_cdm      the torch trainer (Trainer, TorchStep); train_cdm_mlx the MLX one
    distributed    torchrun / DDP set-up for train_cdm
Evaluation
    cf, cf_original    the coarse-to-fine decoders (shared protocol / the original's)
    elbo           the absorbing-mask diffusion ELBO of the bidirectional pass (an NLL upper bound)
    audits         audits that expose a decoder whose NLL is not a code length
    toy_scorers    small scorers with exactly normalized distributions (tests, audits)
    backends, torch_backend, mlx_backend   one evaluation interface over torch and MLX
    eval_cf, leakage_test, gen_test, entropy_floor, benchmark, profile_step   command-line tools
Data, records and recipes' helpers
    challenge_format, data, prepared_folder, tokenizer_train, corpus_*   the challenge's file format
    prepare_data, fetch_original   build / fetch data folders and the original's checkpoints
    checkpoint, run_log    checkpoint files and run logs
    cell_status, summarize (with scale_fit), compare_record, audit_table, replay_fixture,
    python_deps, cli_help

Entry scripts at the documented paths (experiments/<dated folder>/*.py, scripts/*.py) only call
main() of the module of the same name.
"""
