"""Score a checkpoint with Pure-AR and the Coarse-to-Fine decoders on the SAME windows.

Every decoder of cf.py (default: ar, cf_published, cf_valid) scores exactly the same windows:
one RNG seeded by --seed draws the window offsets (METHOD.md §5: N windows of T+1 tokens at random
offsets in the validation tokens), or --full_val takes every non-overlapping window
(window k = tokens[k*T : k*T+T+1], the trainer's own validation windows). The random fill of
the CF passes comes from cf.draw_fills(--seed), a stream of its own (see window_rng).

Bytes follow METHOD.md §2 on (prev, target) of each window, no clamping; BPB = sum NLL / (ln 2 *
sum bytes). Each decoder's BPB splits into a pass-1 part and a pass-2 part (each part's NLL
over the TOTAL bytes, so part1 + part2 = BPB); the pass-1-only / pass-2-only BPB on each pass's
own bytes is printed as well. cf_published is NOT a valid code length (METHOD.md §6) and is labelled
so on every line that shows it.

Consistency check: the `ar` decoder's NLL (the backend's scorer through cf.decode_nll) must equal
the trainer's own Pure-AR validation pass (the backend's ar_nll_sum) on the same windows.

Backends (--backend, also in leakage_test.py and gen_test.py): torch (default) or mlx, the same
numbers from either framework on the same checkpoint (tests/test_mlx_eval.py: ar BPB within 1e-4,
cf_valid within 1e-3). With --backend mlx nothing imports torch (backends.py), so a Mac with only
`pip install -e '.[mlx]'` evaluates; --device auto is then MLX's default device (the Apple GPU,
bfloat16 compute, as torch's bf16 autocast on CUDA; float32 on the CPU).

    python eval_cf.py --checkpoint runs/x/final_model.npz --data_dir data/shakespeare
    python eval_cf.py --checkpoint runs/x/step_final.pt --data_dir DIR --full_val --seq_len 256
    python eval_cf.py --backend mlx --checkpoint runs/x/final_model.npz --data_dir DIR

Progress lines (with ETA) go to stderr, the report to stdout, the same numbers as JSON to
--json_out (default: next to the checkpoint). Next to the JSON, <json stem>.windows.npz (named in
the JSON under `per_window_file`) holds each window's numbers, so any statistic can be recomputed
without the model: `offsets` (N,), `seed` (scalar), `bytes` (N,) and, per decoder, `nll_<decoder>`
(N,) float64 nats summed over the window's targets, plus `nll_<decoder>_pass1` / `_pass2` for the
two-pass decoders (ar has one pass).

The fill mixture: cf_valid_mix and cf_bidir_skeleton_mix score each window by -log mean_f Q_f(x)
over the n_random fills (cf.py) instead of the mean of -log Q_f: a valid and shorter code for a
coder that shares the fill seed. Listed next to their base decoder (e.g. --decoders
ar,cf_valid,cf_valid_mix) they reuse its forwards through the batch's cf.MemoScorer, so they
cost no model call; their `nll_<name>` per window is the mixture's code length. Exit status: 0 done; 1 bad input (one `error:`
line, nothing written); 2 the consistency check failed (JSON written; --full_val only, the one
mode whose windows are the trainer's: in random mode JSON `consistency` says it was not run and why).

Two protocols (--protocol):
  shared    (default) the project's protocol above.
  original  the original record's evaluator, eval_cf_ablation.py, draw for draw (cf_original.py):
            Pure-AR and CF on their own RandomState windows of the first validation shard, its
            fills in its order, bytes clamped to max(b, 1), one window per forward. It prints
            and writes the published kind of numbers (pure_ar_bpb, cf_ar_part, cf_cdm_part,
            cf_total); cf_total and its parts are NOT a valid code length (experiments/METHOD.md
            §6) and say so on every line. --decoders, --full_val, --val_tokens and --batch_size
            do not apply. JSON default: <stem>.eval_cf_original.json next to the checkpoint.

        python eval_cf.py --protocol original --checkpoint ckpt/5L_w03/step_final.pt \\
            --original_arch 5L --data_dir DIR --n_seqs 500 --seq_len 1024

Checkpoints: ours carry their config. The original record's (a raw state dict in a .npz, or
{"model": state dict, ...} in a .pt) carry none; their architecture is read from the shapes
except the XSA depth: give --xsa_last_n N, or --original_arch 5L|11L for the record's two sizes
(checkpoint.read_checkpoint). The same two flags work in leakage_test.py and gen_test.py.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import sys
import time
from pathlib import Path

import numpy as np

from meadow_golf.eval import cf
from meadow_golf.eval import elbo as elbo_mod
from meadow_golf.data.challenge_format import atomic_write_bytes, bits_per_byte
from meadow_golf.model.checkpoint import CheckpointError
from meadow_golf.eval.backends import load_backend
from meadow_golf.eval.eval_cf_original import evaluate_original, original_lines
from meadow_golf.eval.eval_common import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, WINDOW_STREAM, OneLineParser,
                                          Progress, UsageError, add_backend_flags, add_checkpoint_flags,
                                          check_checkpoint_flags, check_paths, check_tokenizer, default_json_path,
                                          error_line, full_val_offsets, gather_windows, load_checkpoint, load_data,
                                          parse_decoders, print_tokenizer_note, random_offsets, report_header,
                                          windows_digest, write_json)
from meadow_golf.common.paths import check_writable_file
from meadow_golf.common.run_log import git_commit, versions
from meadow_golf.common.cli_help import HelpFormatter

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DECODERS = ("ar", "cf_published", "cf_valid")
DEFAULT_BATCH_SIZE = 16
PROTOCOLS = ("shared", "original")
# The decoders of many forwards (cf.Decoder.expensive: one per skeleton token or per target): opt-in
# only (--decoders). cf_bidir_skeleton_mix reuses cf_bidir_skeleton's forwards when both are listed,
# but alone it runs all of them.
EXPENSIVE_DECODERS = cf.decoders_where(expensive=True)
FILLS = ("auto", "random", "mask")
# Why a decoder that cf.VALID marks invalid is not a code length, for the printed label.
INVALID_REASONS = {
    "cf_published": "pass 1 conditions on tokens decoded later",
}
# Relative tolerance of the ar consistency check. In float32 the two paths give bitwise-equal
# per-token log-probs for the same forward and both sum them in float64, so only the summation
# order differs. Under bf16 autocast, forwards of different batch shapes may round differently.
CONSISTENCY_RTOL = {"float32": 1e-9, "bf16": 2e-3}


def not_valid_label(decoder: str) -> str:
    reason = INVALID_REASONS.get(decoder, "cf.VALID marks this decoder as invalid; see leakage_test.py")
    return f"(NOT a valid code length: {reason})"


# ----------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help=".npz or step_*.pt carrying its own model config, or an original record's .npz / .pt "
                        "(with --xsa_last_n or --original_arch)")
    p.add_argument("--data_dir", required=True, help="prepared folder with fineweb_val_*.bin shards")
    p.add_argument("--tokenizer_path", default=None, help="default: the tokenizer named in DATA_DIR/meta.json")
    p.add_argument("--protocol", default="shared", choices=PROTOCOLS,
                   help="shared: the project's protocol (default); original: the original record's "
                        "eval_cf_ablation.py, draw for draw (cf_original.py)")
    add_checkpoint_flags(p)
    p.add_argument("--decoders", default=None,
                   help=f"comma-separated names from {', '.join(cf.DECODERS)}, or 'all' "
                        f"({', '.join(EXPENSIVE_DECODERS)}: one forward per skeleton token); "
                        f"default {','.join(DEFAULT_DECODERS)}")
    p.add_argument("--n_seqs", type=int, default=500, help="random windows (ignored with --full_val)")
    p.add_argument("--seq_len", type=int, default=1024, help="T: targets per window (windows are T+1 tokens)")
    p.add_argument("--stride", type=int, default=2, help="CF skeleton stride s (METHOD.md §5)")
    p.add_argument("--rounds", type=int, default=2, help="CF fill rounds r (METHOD.md §5)")
    p.add_argument("--n_random", type=int, default=None,
                   help="random fills averaged per CF pass (default 3; a mask fill has one, so 1)")
    p.add_argument("--fill", default="auto", choices=FILLS,
                   help="what hides a not-yet-decoded position: random tokens (the original), or the mask token of "
                        "an absorbing-noise model; auto: mask when the checkpoint has a mask token")
    p.add_argument("--elbo_samples", type=int, default=0,
                   help="K > 0: also the absorbing ELBO of the bidirectional pass (elbo.py), K stratified Monte "
                        "Carlo samples per window, reported with its standard error as an upper bound; needs a "
                        "mask-token checkpoint")
    p.add_argument("--seed", type=int, default=42, help="window offsets and (separately) the CF fill")
    p.add_argument("--full_val", action="store_true", help="every non-overlapping window instead of random ones")
    p.add_argument("--val_tokens", type=int, default=None,
                   help="use the first N validation tokens (+1), like train_cdm.py; 0 = all (default)")
    p.add_argument("--batch_size", type=int, default=None, help=f"windows per forward (default {DEFAULT_BATCH_SIZE})")
    add_backend_flags(p)
    p.add_argument("--json_out", default=None,
                   help="default: next to the checkpoint, <stem>.eval_cf.json (--protocol original: "
                        "<stem>.eval_cf_original.json)")
    return p


def validate_args(args) -> list[str]:
    """Check the flags before anything is loaded; return the decoder list (empty for --protocol
    original). Fills in the defaults of the flags that only the shared protocol has."""
    if args.protocol == "original":
        given = [flag for flag, value in (("--decoders", args.decoders), ("--val_tokens", args.val_tokens),
                                          ("--batch_size", args.batch_size)) if value is not None]
        given += ["--full_val"] if args.full_val else []
        if given:
            raise UsageError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --protocol "
                             "original (its decoders, windows and one-window batches are fixed)")
    args.batch_size = DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    if args.protocol == "original" and (args.fill != "auto" or args.elbo_samples):
        raise UsageError("--fill and --elbo_samples do not apply to --protocol original (its fill is random tokens)")
    if args.fill == "mask" and args.n_random not in (None, 1):
        raise UsageError(f"--fill mask has one fill realization: --n_random must be 1, got {args.n_random}")
    if args.elbo_samples < 0:
        raise UsageError(f"--elbo_samples must be >= 0 (0 = off), got {args.elbo_samples}")
    n_random_given = args.n_random is not None
    args.n_random = 3 if args.n_random is None else args.n_random
    args.val_tokens = 0 if args.val_tokens is None else args.val_tokens
    for flag, minimum in (("stride", 2), ("rounds", 1), ("n_random", 1), ("n_seqs", 1), ("seq_len", 2),
                          ("batch_size", 1)):
        if getattr(args, flag) < minimum:
            raise UsageError(f"--{flag} must be >= {minimum}, got {getattr(args, flag)}")
    if args.val_tokens < 0:
        raise UsageError(f"--val_tokens must be >= 0 (0 = all), got {args.val_tokens}")
    args.n_random_given = n_random_given
    check_checkpoint_flags(args)
    check_paths(args.checkpoint, args.json_out)
    if args.protocol == "original":
        return []
    return parse_decoders(args.decoders if args.decoders is not None else ",".join(DEFAULT_DECODERS))


# ----------------------------------------------------------------------------- scoring


def empty_totals() -> dict:
    return {"nll": 0.0, "pass1_nll": 0.0, "pass2_nll": 0.0, "pass1_tokens": 0, "pass2_tokens": 0,
            "pass1_bytes": 0, "pass2_bytes": 0, "seconds": 0.0, "digest": hashlib.sha256()}


def accumulate(totals: dict, parts: dict, target_bytes: np.ndarray, windows: np.ndarray) -> None:
    nll, pass1, pass2 = parts["nll"], parts["pass1"], parts["pass2"]
    if not np.all(np.isfinite(nll)):
        raise FloatingPointError("a decoder produced a non-finite NLL")
    # math.fsum: the per-part totals are exact sums of the float64 NLLs, so part1 + part2 = total.
    part1 = math.fsum(nll[:, pass1].ravel())
    part2 = math.fsum(nll[:, pass2].ravel())
    totals["pass1_nll"] += part1
    totals["pass2_nll"] += part2
    totals["nll"] += part1 + part2
    totals["pass1_tokens"] += int(pass1.sum()) * nll.shape[0]
    totals["pass2_tokens"] += int(pass2.sum()) * nll.shape[0]
    totals["pass1_bytes"] += int(target_bytes[:, pass1].sum())
    totals["pass2_bytes"] += int(target_bytes[:, pass2].sum())
    # The windows this decoder actually scored, hashed in order: proof that all saw the same ones.
    totals["digest"].update(np.ascontiguousarray(windows, dtype="<i8").tobytes())


def safe_bpb(nll: float, n_bytes: int) -> float | None:
    return bits_per_byte(nll, n_bytes) if n_bytes > 0 else None


def summarize(name: str, totals: dict) -> dict:
    n_bytes = totals["pass1_bytes"] + totals["pass2_bytes"]
    valid = bool(cf.VALID[name])
    return {
        "bpb": bits_per_byte(totals["nll"], n_bytes),
        "valid_code_length": valid,
        "label": "" if valid else not_valid_label(name),
        "definition": cf.DECODERS[name].definition,
        "nll_sum": totals["nll"],
        "tokens": totals["pass1_tokens"] + totals["pass2_tokens"],
        "bytes": n_bytes,
        "parts": {
            "pass1": {"nll_sum": totals["pass1_nll"], "tokens": totals["pass1_tokens"],
                      "bytes": totals["pass1_bytes"], "bpb_part": bits_per_byte(totals["pass1_nll"], n_bytes),
                      "bpb_own_bytes": safe_bpb(totals["pass1_nll"], totals["pass1_bytes"])},
            "pass2": {"nll_sum": totals["pass2_nll"], "tokens": totals["pass2_tokens"],
                      "bytes": totals["pass2_bytes"], "bpb_part": bits_per_byte(totals["pass2_nll"], n_bytes),
                      "bpb_own_bytes": safe_bpb(totals["pass2_nll"], totals["pass2_bytes"])},
        },
        "windows_sha256": totals["digest"].hexdigest(),
        "seconds": totals["seconds"],
    }


def per_window_sums(parts: dict) -> dict[str, np.ndarray]:
    """Each window's NLL (nats, summed over its scored targets): total, and per pass where the
    decoder has two passes (ar scores everything in pass 1, so it has none)."""
    nll, pass1, pass2 = parts["nll"], parts["pass1"], parts["pass2"]
    sums = {"": np.array([math.fsum(row) for row in nll])}
    if pass1.any() and pass2.any():
        sums["_pass1"] = np.array([math.fsum(row) for row in nll[:, pass1]])
        sums["_pass2"] = np.array([math.fsum(row) for row in nll[:, pass2]])
    return sums


def score_decoders(scorer, windows: np.ndarray, target_bytes: np.ndarray, decoders: list[str], *,
                   batch_size: int, settings: cf.CFSettings, per_window: dict | None = None) -> dict:
    """Every decoder on every batch of windows; a batch is scored by all decoders in turn, through
    one cf.MemoScorer per batch, so a forward two decoders share (ar = cf_published's pass 1, the
    pass-2 rounds of every CF decoder) runs once. A decoder's `seconds` include only the forwards
    it ran first.

    per_window: if a dict is given, it receives `nll_<decoder>` (N,) and, for two-pass decoders,
    `nll_<decoder>_pass1` / `_pass2`, float64 nats per window in window order (what
    write_per_window stores)."""
    totals = {name: empty_totals() for name in decoders}
    chunks: dict[str, list[np.ndarray]] = {}
    scorer = cf.MemoScorer(scorer)
    n_batches = math.ceil(len(windows) / batch_size)
    progress = Progress(n_batches, "batches", every=max(1, n_batches // 20))
    for b, start in enumerate(range(0, len(windows), batch_size)):
        batch = windows[start : start + batch_size]
        for name in decoders:
            t0 = time.perf_counter()
            parts = cf.decode_parts(scorer, batch, name, settings)
            totals[name]["seconds"] += time.perf_counter() - t0
            accumulate(totals[name], parts, target_bytes[start : start + batch_size], batch)
            for suffix, sums in per_window_sums(parts).items():
                chunks.setdefault(f"nll_{name}{suffix}", []).append(sums)
        scorer.clear()
        progress.update(b + 1, f"windows:{min(start + batch_size, len(windows))}/{len(windows)} ")
    if per_window is not None:
        per_window.update({key: np.concatenate(parts) for key, parts in chunks.items()})
    return {name: summarize(name, totals[name]) for name in decoders}


def resolve_fill(args, config) -> tuple[str, int]:
    """(fill, n_random) for this checkpoint. auto: the mask token when the model has one (it was
    trained with absorbing noise and never saw random fill as "hidden"), else random tokens. A
    mask fill has one realization, so n_random is 1. Refused before any scoring: a mask fill or
    the ELBO on a model without a mask token, and an explicit --n_random > 1 with a mask fill."""
    fill = args.fill if args.fill != "auto" else ("mask" if config.mask_id is not None else "random")
    if fill == "mask" and config.mask_id is None:
        raise UsageError(f"--fill mask: {args.checkpoint} has no mask token (trained with --noise uniform)")
    if args.elbo_samples and config.mask_id is None:
        raise UsageError(f"--elbo_samples: {args.checkpoint} has no mask token; the diffusion ELBO is a bound only "
                         "for an absorbing-mask model (train with --noise absorbing)")
    if fill == "mask":
        if getattr(args, "n_random_given", False) and args.n_random != 1:
            raise UsageError(f"the mask fill has one realization: --n_random must be 1, got {args.n_random}")
        return fill, 1
    return fill, args.n_random


def score_elbo(scorer, windows: np.ndarray, target_bytes: np.ndarray, n_samples: int, *, seed: int, mask_id: int,
               batch_size: int, per_window: dict | None = None) -> dict:
    """The absorbing ELBO (elbo.py) of every window, in batches, over the same windows and bytes as
    every decoder. Window n's mask times and masks come from its own stream (elbo.draw_noise with
    first_window = n), so the numbers do not depend on the batch size. per_window receives
    `nll_elbo` (N,) (each window's K-sample mean, nats) and `nll_elbo_samples` (N, K)."""
    t0 = time.perf_counter()
    T = windows.shape[1] - 1
    terms = []
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        times, masks = elbo_mod.draw_noise(seed, len(batch), n_samples, T, first_window=start)
        terms.append(elbo_mod.sample_terms(scorer, batch[:, 1:], times, masks, mask_id))
    terms = np.concatenate(terms)
    means = terms.mean(axis=1)
    if not np.all(np.isfinite(means)):
        raise FloatingPointError("the ELBO produced a non-finite NLL")
    if per_window is not None:
        per_window.update({"nll_elbo": means, "nll_elbo_samples": terms})
    result = elbo_mod.summarize(means, int(target_bytes.sum()), n_samples)
    result.update({"noise_rng": f"np.random.default_rng([seed, {elbo_mod.ELBO_STREAM}, window index])",
                   "seconds": time.perf_counter() - t0})
    return result


def per_window_path(json_out: Path) -> Path:
    """runs/x/final_model.eval_cf.json -> runs/x/final_model.eval_cf.windows.npz (same folder)."""
    return json_out.with_name(f"{json_out.stem}.windows.npz")


def write_per_window(path: Path, arrays: dict) -> None:
    """np.savez of the per-window arrays, written atomically (a reader never sees half a file)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


# Why random-window mode makes no consistency check. Stated in the JSON and the printed line.
NOT_RUN_RANDOM = ("not run: random windows are not the trainer's windows; ar_nll_sum on each window "
                  "repeats the ar decoder's own forward, so it would agree whatever either computes")


def consistency_check(model, backend, tokens, windows, offsets, seq_len, batch_size, full_val,
                      ar_result: dict) -> dict:
    """The `ar` decoder's NLL vs the trainer's ar_nll_sum on the trainer's windows (--full_val only).

    --full_val windows are exactly ar_nll_sum's windows of the same tokens, so the trainer's own
    validation (batched, as in training) is an independent account of the same numbers. Random
    windows overlap and are not the trainer's: the only ar_nll_sum that covers them is one
    forward per window, the same forward the decoder makes, which gives rel_diff 0.0 whatever the
    model computes. That is no check, so in random mode none is made and the result says so
    ("run": false, "passed": None); the tests compare random-mode ar against an independent
    recomputation instead.
    """
    if not full_val:
        return {"run": False, "reason": NOT_RUN_RANDOM, "passed": None}
    t0 = time.perf_counter()
    n_used = int(offsets.size) * seq_len + 1
    reference, n_targets, ref_windows = backend.ar_nll_sum(model, tokens[:n_used], seq_len, batch_size)
    if not np.array_equal(ref_windows, windows):
        raise AssertionError("ar_nll_sum scored other windows than eval_cf (bug)")
    rtol = CONSISTENCY_RTOL[backend.precision]
    decoded = ar_result["nll_sum"]
    rel = abs(decoded - reference) / max(abs(reference), 1e-300)
    return {
        "run": True,
        "reference": "ar_nll_sum on the same validation tokens (batched, the trainer's windows)",
        "ar_nll_sum_decode_nll": decoded,
        "ar_nll_sum_reference": reference,
        "ar_bpb_decode_nll": ar_result["bpb"],
        "ar_bpb_reference": bits_per_byte(reference, ar_result["bytes"]),
        "tokens_reference": n_targets,
        "rel_diff": rel,
        "rtol": rtol,
        "passed": bool(rel <= rtol and n_targets == ar_result["tokens"]),
        "seconds": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------- report


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def decoder_line(name: str, r: dict) -> str:
    p1, p2 = r["parts"]["pass1"], r["parts"]["pass2"]
    line = (f"{name:<18} bpb:{r['bpb']:.6f} pass1_part:{p1['bpb_part']:.6f} pass2_part:{p2['bpb_part']:.6f} "
            f"pass1_only_bpb:{fmt(p1['bpb_own_bytes'])} pass2_only_bpb:{fmt(p2['bpb_own_bytes'])} "
            f"tokens:{r['tokens']} bytes:{r['bytes']} valid_code_length:{str(r['valid_code_length']).lower()}")
    return line if r["valid_code_length"] else f"{line} {r['label']}"


def print_report(result: dict) -> None:
    proto, win = result["protocol"], result["windows"]
    print(f"checkpoint:{result['checkpoint']} params:{result['params']} backend:{result['backend']} "
          f"device:{result['device']} precision:{result['precision']}")
    print(f"windows:{win['count']} mode:{proto['mode']} seq_len:{proto['seq_len']} stride:{proto['stride']} "
          f"rounds:{proto['rounds']} n_random:{proto['n_random']} fill:{proto['fill']} seed:{proto['seed']} "
          f"val_tokens:{proto['val_tokens_available']} windows_sha256:{win['sha256'][:16]}")
    print("bpb = pass1_part + pass2_part (each part's NLL over ALL bytes); *_only_bpb: over that pass's own bytes")
    for name, r in result["decoders"].items():
        print(decoder_line(name, r))
    e = result.get("elbo")
    if e:
        print(f"{'elbo':<18} bpb:{e['bpb']:.6f} se:{e['bpb_se']:.6f} samples_per_window:{e['samples_per_window']} "
              f"bytes:{e['bytes']} ({e['label']})")
    c = result["consistency"]
    if not c.get("run", True):
        print(f"consistency: {c['reason']}")
    else:
        print(f"consistency: ar via decode_nll {c['ar_bpb_decode_nll']:.9f} vs ar_nll_sum {c['ar_bpb_reference']:.9f} "
              f"rel_diff:{c['rel_diff']:.2e} rtol:{c['rtol']:.0e} {'PASS' if c['passed'] else 'FAIL'}")
    print(f"seconds:{result['seconds']:.1f} json:{result['json_out']}")


# ----------------------------------------------------------------------------- main


def evaluate(args, decoders: list[str]) -> dict:
    t_start = time.perf_counter()
    backend = load_backend(args.backend, args.device)
    model, config, checkpoint_format = load_checkpoint(args.checkpoint, backend, args.xsa_last_n, args.original_arch)
    tables, tokenizer, tokens = load_data(args.data_dir, args.tokenizer_path, config.vocab_size, args.val_tokens)
    tokenizer_check = check_tokenizer(args.checkpoint, checkpoint_format, tokenizer, tables)
    T = args.seq_len
    where = f"{args.data_dir} (--seq_len {T})"
    if args.full_val:
        offsets = full_val_offsets(len(tokens), T, where)
    else:
        offsets = random_offsets(len(tokens), T + 1, args.n_seqs, args.seed, where)
    windows = gather_windows(tokens, offsets, T + 1)
    target_bytes = tables.stream_bytes(windows)  # (N, T) METHOD.md §2 bytes of x given prev, no clamping

    fill, n_random = resolve_fill(args, config)
    mask_id = config.mask_id if fill == "mask" else None
    settings = cf.CFSettings(vocab_size=config.vocab_size, stride=args.stride, rounds=args.rounds, n_random=n_random,
                             seed=args.seed, mask_id=mask_id)
    scorer = backend.scorer(model)
    # Per-window sums let any statistic (bootstrap CIs over windows, paired differences between
    # cells on the same windows) be recomputed later without rerunning the model.
    per_window = {"offsets": offsets, "seed": np.int64(args.seed),
                  "bytes": target_bytes.sum(axis=1, dtype=np.int64)}
    results = score_decoders(scorer, windows, target_bytes, decoders, batch_size=args.batch_size, settings=settings,
                             per_window=per_window)
    elbo_result = None
    if args.elbo_samples:
        elbo_result = score_elbo(scorer, windows, target_bytes, args.elbo_samples, seed=args.seed,
                                 mask_id=config.mask_id, batch_size=args.batch_size, per_window=per_window)
    ar_result = results["ar"] if "ar" in results else score_decoders(
        scorer, windows, target_bytes, ["ar"], batch_size=args.batch_size, settings=settings)["ar"]
    consistency = consistency_check(model, backend, tokens, windows, offsets, T, args.batch_size, args.full_val,
                                    ar_result)
    return {
        **report_header(args, model, config, backend, checkpoint_format, tokenizer, tokenizer_check),
        "protocol": {
            "name": "shared",
            "mode": "full_val" if args.full_val else "random",
            "n_seqs": int(offsets.size), "seq_len": T, "stride": args.stride, "rounds": args.rounds,
            "n_random": n_random, "seed": args.seed, "batch_size": args.batch_size,
            "fill": fill, "mask_id": mask_id,
            "val_tokens_available": int(len(tokens)),
            "window_rng": (f"np.random.default_rng([seed, {WINDOW_STREAM}]).integers(0, n_val - T, n_seqs)"
                           if not args.full_val else "none: window k = tokens[k*T : k*T+T+1]"),
            "fill_rng": ("cf.draw_fills(seed, ...) = np.random.default_rng(seed), shared by all windows"
                         if fill == "random" else "none: every hidden position holds the mask token (one fill)"),
            "bytes": "METHOD.md §2 on (prev, target) of each window, no clamping",
        },
        "windows": {"count": int(offsets.size), "tokens_per_window": T + 1, "offsets": offsets.tolist(),
                    "sha256": windows_digest(windows)},
        "decoders": results,
        "elbo": elbo_result,
        "consistency": consistency,
        "seconds": time.perf_counter() - t_start,
        "git_commit": git_commit(REPO_ROOT),
        "versions": versions(),
        "_per_window_arrays": per_window,  # main() writes them next to the JSON, then drops this key
    }


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        decoders = validate_args(args)
        original = args.protocol == "original"
        json_out = Path(args.json_out) if args.json_out else default_json_path(
            args.checkpoint, "eval_cf_original" if original else "eval_cf")
        # Before any scoring: the files the results go to can be written.
        check_writable_file(json_out, "--json_out")
        if not original:
            check_writable_file(per_window_path(json_out), "--json_out's per-window file")
        result = evaluate_original(args) if original else evaluate(args, decoders)
        result["json_out"] = str(json_out)
        if not original:
            # The arrays first: a JSON that names its per-window file is never left without it.
            arrays = result.pop("_per_window_arrays")
            write_per_window(per_window_path(json_out), arrays)
            result["per_window_file"] = per_window_path(json_out).name
        write_json(json_out, result)
    except (ValueError, OSError, CheckpointError, FloatingPointError) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    if original:
        print("\n".join(original_lines(result)))
        print_tokenizer_note(result)
        return EXIT_OK
    print_report(result)
    print_tokenizer_note(result)
    if result["consistency"]["passed"] is False:
        print("check failed: the ar decoder disagrees with the trainer's ar_nll_sum (see consistency)",
              file=sys.stderr)
        return EXIT_CHECK_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
