"""eval_cf.py --protocol original: the original's evaluation (cf_original.run) through a backend's
scorer, one window per forward, and its report, whose every cf_total line says it is NOT a code
length (METHOD.md §6).
"""

from __future__ import annotations

import time
from pathlib import Path

from meadow_golf.common.run_log import git_commit, versions
from meadow_golf.eval import cf_original
from meadow_golf.eval.backends import load_backend
from meadow_golf.eval.eval_common import (Progress, UsageError, check_tokenizer, load_checkpoint, load_data,
                                          report_header)

REPO_ROOT = Path(__file__).resolve().parents[3]


def evaluate_original(args) -> dict:
    """cf_original.run through the backend's scorer, one window per forward, plus what ran it."""
    t_start = time.perf_counter()
    backend = load_backend(args.backend, args.device)
    model, config, checkpoint_format = load_checkpoint(args.checkpoint, backend, args.xsa_last_n, args.original_arch)
    tables, tokenizer, val = load_data(args.data_dir, args.tokenizer_path, config.vocab_size, 0, first_shard=True)
    tokenizer_check = check_tokenizer(args.checkpoint, checkpoint_format, tokenizer, tables)
    settings = cf_original.Settings(n_seqs=args.n_seqs, seq_len=args.seq_len, stride=args.stride, rounds=args.rounds,
                                    n_random=args.n_random, seed=args.seed, vocab_size=config.vocab_size)
    try:
        settings.check(len(val))
    except ValueError as e:
        raise UsageError(f"{Path(args.data_dir) / cf_original.VAL_SHARD} (--seq_len {args.seq_len}): {e}") from None
    bars: dict[str, Progress] = {}

    def on_window(stage: str, done: int, total: int) -> None:
        if done == 0:  # the stage starts: its clock (and so its ETA) starts here
            bars[stage] = Progress(total, stage, every=max(1, total // 20))
        else:
            bars[stage].update(done)

    result = cf_original.run(backend.scorer(model), val, tables, settings, on_window=on_window)
    precision = backend.precision
    result.update({
        **report_header(args, model, config, backend, checkpoint_format, tokenizer, tokenizer_check),
        "val_shard": str(Path(args.data_dir) / cf_original.VAL_SHARD),
        "precision_detail": ("float32 forward and log-softmax" if precision == "float32" else
                             "bf16 forward (torch_backend.autocast_for, or MLX's bfloat16 compute dtype) with a "
                             "float32 tied head, softcap and log-softmax; the original ran its forward in bf16 "
                             "too, tied head and softcap included, so the two agree only to bf16 rounding"),
        "batch_size": 1,
        "seconds": time.perf_counter() - t_start,
        "git_commit": git_commit(REPO_ROOT),
        "versions": versions(),
    })
    return result


def original_lines(r: dict) -> list[str]:
    """The report of --protocol original. Every line with cf_total or a part of it carries the
    NOT-a-code-length label; the Pure-AR line says its bytes are clamped."""
    valid, why = r["valid_code_length"], r["valid_code_length_reasons"]

    def label(key: str) -> str:
        return "valid code length" if valid[key] else f"NOT a valid code length: {why[key]}"

    clamp = ("computed with clamped bytes max(b, 1) per token, not the challenge's byte count; "
             + ("the clamp changed no token here, a valid code length" if valid["pure_ar_bpb"]
                else f"NOT a valid code length: {why['pure_ar_bpb']}"))
    t = r["totals"]
    return [
        f"protocol:original (the published protocol: the original record's eval_cf_ablation.py) "
        f"checkpoint:{r['checkpoint']} format:{r['checkpoint_format']['format']} backend:{r['backend']} "
        f"device:{r['device']} precision:{r['precision']} batch:1",
        f"n_seqs:{r['n_seqs']} seq_len:{r['seq_len']} stride:{r['stride']} rounds:{r['rounds']} "
        f"n_random:{r['n_random']} seed:{r['seed']} fill_vocab:{r['fill_vocab_size']} "
        f"val_tokens:{r['val_tokens']} (whole first validation shard)",
        f"published pure_ar_bpb:{r['pure_ar_bpb']:.6f} ({clamp})",
        f"pure_ar_bpb_unclamped_bytes:{r['pure_ar_bpb_unclamped_bytes']:.6f} (same windows, the challenge's "
        f"byte count; {label('pure_ar_bpb_unclamped_bytes')})",
        f"published cf_ar_part:{r['cf_ar_part']:.6f} (pass 1, {t['pass1_ar_nll']:.4f} nats; "
        f"{label('cf_ar_part')})",
        f"published cf_cdm_part:{r['cf_cdm_part']:.6f} (pass 2, {t['pass2_cdm_nll']:.4f} nats; "
        f"{label('cf_cdm_part')})",
        f"published cf_total:{r['cf_total']:.6f} (over {t['bytes_clamped']:.0f} clamped bytes; {label('cf_total')})",
        f"published cf_vs_ar_pct:{r['cf_vs_ar_pct']:+.2f}% ({label('cf_vs_ar_pct')})",
        f"seconds:{r['seconds']:.1f} json:{r['json_out']}",
    ]
