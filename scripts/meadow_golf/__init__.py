"""meadow_golf: the code every dated experiment shares (importing the package imports nothing else).

Sub-packages, one floor each; a module imports only from its own floor or the floors below it:

    common    command-line help, run logs, the dependency check, output checks, the entry step
                                                                       (imports nothing of the package)
    data      the challenge's file format, corpora, tokenizers, the validation stream
    model     GPTConfig (and its parameter shapes), the noise, the torch GPT and its MLX twin,
              checkpoint files
    eval      the decoders (cf, cf_original), the ELBO, audits, the torch / MLX evaluation
              backends, eval_cf, leakage, generate
    train     the trainers (train_cdm, train_cdm_mlx) on their shared core (flags, schedule, run
              folder), optimizers, DDP
    original  the original work's fixture replay, checkpoint fetch and audit table
    report    summaries: rows, seed statistics and the line against size, tables, plots, record
              comparison
    recipes   the experiments' recipes: presets, settings, cells, train / evaluate / summarize
    tools     benchmark, profile_step, entropy_floor (each trains and evaluates)
    retrofit  the LoRA retrofit of a pretrained causal LM (experiments/2026-12-06_lora_retrofit); it
              uses common, data, model, eval, train and report; needs the extra `.[retrofit]`

Entry scripts at the documented paths (experiments/<dated folder>/*.py, scripts/*.py) only call
main() of one module, through common.entry.run (one `error:` line naming the install command when a
package is missing).
"""
