"""Leakage checks of a model and of every CF decoder (METHOD.md §6), on a checkpoint or a random init.

1. Attention: two sequences equal on positions 0..15 and different on 16..31. A causal forward
   must leave the prefix logits EXACTLY unchanged (and change the suffix); a bidirectional
   forward must change the prefix logits too (it reads the future by design).
2. Order audit (audits.order_audit through the backend's scorer): in each decoder's own decoding order,
   changing a token decoded later must not change the score of a token decoded earlier.
3. Normalization audits: for a V-letter alphabet and T tokens, sum exp(-total NLL) over all V**T
   sequences. Per fill (audits.per_fill_normalization_audit): each of the n_random fill
   realizations scored as its own one-fill code must sum to 1 within 1e-9, two-sided. AM-GM
   bound (audits.normalization_audit), a weaker second line: the n_random-fill mean sums to <= 1.
   Run on the model restricted to an alphabet of V real tokens (with --data_dir: the data's V
   most frequent ordinary tokens, never control ids, context the most frequent; else ids
   0..V-1) and on a coupled toy Markov scorer; the toy scorer's order audit is reported as well.

cf_published is expected to FAIL (2) and usually (3): its pass 1 scores a skeleton token with the
later-decoded gap tokens visible. That failure is the finding, not an error; the exit status is
non-zero only when a decoder that CLAIMS to be valid (cf.VALID) fails a check, or when the
attention check fails.

    python leakage_test.py --checkpoint runs/x/final_model.npz [--data_dir DIR]
    python leakage_test.py --random_init --json_out /tmp/leak.json
    python leakage_test.py --backend mlx --checkpoint runs/x/final_model.npz   (MLX, no torch imported)
    python leakage_test.py --checkpoint ckpt/5L_w03/step_final.pt --original_arch 5L   (an original record's checkpoint)

Exit status: 0 all claimed-valid decoders pass; 1 bad input (one `error:` line); 2 a check failed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from meadow_golf.eval import audits
from meadow_golf.eval import cf
from meadow_golf.eval.backends import load_backend
from meadow_golf.model.checkpoint import CheckpointError
from meadow_golf.common.paths import check_writable_file
from meadow_golf.eval.eval_common import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, OneLineParser, Progress, UsageError,
                                     add_backend_flags, add_checkpoint_flags,
                                     check_checkpoint_flags, check_paths, default_json_path, error_line, gather_windows,
                                     check_tokenizer, load_checkpoint, load_data, parse_decoders, print_tokenizer_note,
                                     random_offsets, write_json)
from meadow_golf.model.config import GPTConfig, optimizer_group
from meadow_golf.common.run_log import git_commit, versions
from meadow_golf.eval.toy_scorers import MarkovScorer, max_logp_by_enumeration
from meadow_golf.common.cli_help import HelpFormatter

REPO_ROOT = Path(__file__).resolve().parents[3]
ATTENTION_SPLIT, ATTENTION_LEN = 16, 32
# Sums of exactly normalized float64 conditionals: allowed rounding of the normalization audit.
NORMALIZATION_TOL = 1e-9
# Order-audit tolerance. A valid decoder gives bitwise-identical scores for identical rows in a
# float32 batch, but a BLAS kernel may round a row differently depending on where it sits in the
# batch; 1e-5 nats is far above that noise and far below any real leak of a trained model.
# bf16 autocast (CUDA) rounds much more coarsely across batch shapes.
ORDER_TOL = {"float32": 1e-5, "bf16": 5e-2}
TINY_RANDOM_CONFIG = dict(num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, bigram_dim=16, xsa_last_n=1)
EXPECTED_FAILURE_REASON = {
    "cf_published": "expected: pass 1 scores each skeleton token with the later-decoded gap tokens "
                    "visible, so no decoding order has its conditionals (METHOD.md §6)",
}


# ----------------------------------------------------------------------------- models and scorers


def random_init_model(vocab_size: int, seed: int, backend) -> tuple[object, GPTConfig]:
    """A tiny GPT whose matrices (the Muon group and the token embedding) are all drawn at random.

    The output projections, MLP down projections and the bigram table start at zero, which
    makes a fresh model blind to its context: nothing could leak, and no check would mean
    anything. Drawing every matrix lets every path carry information. The draws are numpy's
    (seeded, in sorted name order) and every other parameter keeps its constant init, so both
    backends build the same model. Each matrix has std 1/sqrt(fan_in); for the token embedding
    that is 1/sqrt(d) instead of 0.005, so the logits of the tied head (RMS-normed x, norm
    sqrt(d)) are O(1), not O(0.01): a change of context then moves the scores by amounts far
    above float noise.

    backend: a backend_base.EvalBackend (backends.load_backend).
    """
    config = GPTConfig(vocab_size=vocab_size, **TINY_RANDOM_CONFIG)
    weights = backend.init_weights(config)
    rng = np.random.default_rng(seed)
    for name in sorted(weights):
        shape = weights[name].shape
        if optimizer_group(name, len(shape)) in ("muon", "embed"):
            weights[name] = (rng.standard_normal(shape) / math.sqrt(shape[1])).astype(np.float32)
    return backend.build(config.to_dict(), weights)


class RestrictedVocabScorer:
    """The model as a conditional over a V-letter alphabet of real token ids (cf scorer contract).

    Letter a in [0, V) stands for token id token_ids[a]: inputs are mapped to those ids before
    the forward, and log-softmax is taken over their V logits only, in float64. Each row is then
    a distribution normalized over the alphabet that reads only its inputs (the audit's
    sequences and cf's fills are letters), so the normalization audit's math holds exactly for
    this scorer: a valid decoder sums to 1 over the V**T sequences, whatever the model.
    Only the V selected logits leave the device (backend.logits with columns).
    """

    def __init__(self, model, backend, token_ids):
        token_ids = np.asarray(token_ids, dtype=np.int64)
        if token_ids.ndim != 1 or token_ids.size < 2 or len(set(token_ids.tolist())) != token_ids.size:
            raise UsageError("the normalization alphabet needs at least two distinct token ids")
        if token_ids.min() < 0 or token_ids.max() >= model.config.vocab_size:
            raise UsageError(f"alphabet ids must lie in [0, {model.config.vocab_size}) (the model vocabulary)")
        self.model, self.backend, self.token_ids = model, backend, token_ids

    def max_logp(self, inputs: np.ndarray, is_causal: bool) -> np.ndarray:
        """The largest log-probability over the restricted alphabet (bidir_confidence's choice)."""
        return max_logp_by_enumeration(self, inputs, is_causal, len(self.token_ids))

    def __call__(self, inputs: np.ndarray, is_causal: bool, targets: np.ndarray) -> np.ndarray:
        # Inputs become real ids; targets stay letters (they index the V selected logits).
        logits = self.backend.logits(self.model, self.token_ids[np.asarray(inputs)], is_causal,
                                     columns=self.token_ids).astype(np.float64)
        top = logits.max(axis=-1, keepdims=True)
        log_probs = logits - (top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True)))
        return np.take_along_axis(log_probs, np.asarray(targets, dtype=np.int64)[..., None], axis=-1)[..., 0]


def normalization_alphabet(V: int, val_tokens: np.ndarray | None, tables) -> dict:
    """The V token ids the normalization audit enumerates, and how they were chosen.

    On data: the V most frequent ORDINARY tokens of the validation data (never a control,
    unknown or unused id: a model never sees those between ordinary text, so sequences of them
    test nothing it learned), letter 0 the most frequent, which is also the context token, so
    the context occurs in the data. Without data (random init): ids 0..V-1."""
    if val_tokens is None:
        return {"token_ids": list(range(V)), "source": f"ids 0..{V - 1} (no data given)"}
    counts = np.bincount(np.asarray(val_tokens, dtype=np.int64), minlength=len(tables.is_boundary))
    counts[: len(tables.is_boundary)][np.asarray(tables.is_boundary, dtype=bool)] = 0
    ordinary = int(np.count_nonzero(counts))
    if ordinary < V:
        raise UsageError(f"--norm_vocab {V}: the validation data has only {ordinary} distinct ordinary tokens")
    order = np.argsort(-counts, kind="stable")[:V]
    return {"token_ids": [int(i) for i in order], "counts": [int(counts[i]) for i in order],
            "source": f"the {V} most frequent ordinary tokens of the validation data (context: the most frequent)"}


def coupled_toy_scorer(vocab_size: int) -> MarkovScorer:
    """A sticky Markov chain: neighbours are strongly coupled, so a leak has something to read."""
    return MarkovScorer.sticky(vocab_size, stay=0.8, seed=1)


# ----------------------------------------------------------------------------- checks


def sample_rows(n_rows: int, length: int, vocab_size: int, seed: int, val_tokens: np.ndarray | None,
                where: str = "the validation data") -> np.ndarray:
    """n_rows windows of `length` tokens: validation windows if given, else uniform random ids."""
    if val_tokens is not None:
        return gather_windows(val_tokens, random_offsets(len(val_tokens), length, n_rows, seed, where), length)
    return np.random.default_rng(seed).integers(0, vocab_size, size=(n_rows, length), dtype=np.int64)


def attention_check(model, backend, base_row: np.ndarray, vocab_size: int, seed: int) -> dict:
    """Max |logit change| before / after the split, causal and bidirectional, one batch of 2."""
    first = np.asarray(base_row[:ATTENTION_LEN], dtype=np.int64)
    second = first.copy()
    shift = np.random.default_rng(seed).integers(1, vocab_size, size=ATTENTION_LEN - ATTENTION_SPLIT)
    second[ATTENTION_SPLIT:] = (second[ATTENTION_SPLIT:] + shift) % vocab_size
    batch = np.stack([first, second])
    out = {}
    for mode, is_causal in (("causal", True), ("bidirectional", False)):
        logits = backend.logits(model, batch, is_causal)
        out[mode] = dict(zip(("prefix_max_change", "suffix_max_change"),
                             audits.prefix_change(logits[0], logits[1], ATTENTION_SPLIT)))
    out["split"], out["length"] = ATTENTION_SPLIT, ATTENTION_LEN
    out["causal_prefix_unchanged"] = out["causal"]["prefix_max_change"] == 0.0
    out["causal_suffix_changed"] = out["causal"]["suffix_max_change"] > 0.0
    out["bidirectional_prefix_changed"] = out["bidirectional"]["prefix_max_change"] > 0.0
    out["passed"] = bool(out["causal_prefix_unchanged"] and out["causal_suffix_changed"]
                         and out["bidirectional_prefix_changed"])
    return out


def normalization_passed(result: dict) -> bool:
    total = result["total_prob"]
    if result["n_random"] == 1:
        return abs(total - 1.0) <= NORMALIZATION_TOL  # one order of normalized conditionals: exactly 1
    return total <= 1.0 + NORMALIZATION_TOL  # geometric mean over fills: at most 1 (AM-GM)


def classify(decoder: str, passed: bool) -> tuple[str, str, bool]:
    """(result word, note, counts as a failure of the run) for one check of one decoder."""
    claims_valid = bool(cf.VALID[decoder])
    if passed:
        note = "" if claims_valid else "leak not detected by this check"
        return "PASS", note, False
    if claims_valid:
        return "FAIL", "a decoder that claims to be a valid code length leaks", True
    return "FAIL", EXPECTED_FAILURE_REASON.get(decoder, "expected: the decoder does not claim to be valid"), False


def order_audit(scorer, seqs, name: str, settings: cf.CFSettings, *, tolerance: float) -> dict:
    """audits.order_audit for a decoder with one decoding order; audits.adaptive_order_audit for
    one whose order is chosen per window while it decodes (cf.DECODERS[name].order is None)."""
    if cf.DECODERS[name].order is None:
        return audits.adaptive_order_audit(scorer, seqs, settings, tolerance=tolerance)
    return audits.order_audit(scorer, seqs, name, settings, tolerance=tolerance)


def run_checks(model, backend, args, decoders: list[str], val_tokens, scorer_hook=None, tables=None) -> dict:
    """All checks; scorer_hook(scorer) -> scorer may wrap the model's scorers (tests inject leaks)."""
    hook = scorer_hook or (lambda scorer: scorer)
    vocab = model.config.vocab_size
    # The decodes' settings; each audit gives its own vocabulary.
    settings = cf.CFSettings(vocab_size=vocab, stride=args.stride, rounds=args.rounds, n_random=args.n_random,
                             seed=args.seed)
    tolerance = args.tolerance if args.tolerance is not None else ORDER_TOL[backend.precision]
    rows, results = [], {}

    # One progress line per finished check, as eval_cf.py does per batch: on a trained checkpoint
    # the normalization audits score V**T sequences per decoder and take minutes, and a silent run
    # cannot be told from a hung one. The checks are: attention, then per decoder the order audits
    # (model, toy) and two normalization audits each for the model and the toy (6 per decoder).
    # They differ in cost, so the ETA (elapsed per check so far x checks left) is a rough one.
    progress = Progress(1 + 6 * len(decoders), "leakage", every=1)
    done = [0]

    def add_row(check, decoder, passed, value, value_name):
        word, note, failure = classify(decoder, passed)
        rows.append(dict(check=check, decoder=decoder, claims_valid=bool(cf.VALID[decoder]), result=word,
                         value=value, value_name=value_name, note=note, counts_as_failure=failure))
        done[0] += 1
        progress.update(done[0], f"{check} {decoder} ")

    t0 = time.perf_counter()
    # Both windows are drawn before any check runs, so a data folder too small for them is refused up front.
    base = sample_rows(1, ATTENTION_LEN, vocab, args.seed, val_tokens, f"{args.data_dir} (attention check)")[0]
    seqs = sample_rows(args.audit_windows, args.audit_seq_len + 1, vocab, args.seed + 2, val_tokens,
                       f"{args.data_dir} (--audit_seq_len {args.audit_seq_len})")
    results["attention"] = attention = attention_check(model, backend, base, vocab, args.seed + 1)
    done[0] += 1
    progress.update(done[0], "attention ")

    model_scorer = hook(backend.scorer(model))
    results["order_audit_model"] = {}
    for name in decoders:
        audit = order_audit(model_scorer, seqs, name, settings, tolerance=tolerance)
        results["order_audit_model"][name] = audit
        add_row("order (model)", name, audit["passed"], audit["max_change"], "max change (nats)")

    V, T = args.norm_vocab, args.norm_len
    alphabet = normalization_alphabet(V, val_tokens, tables)
    restricted = hook(RestrictedVocabScorer(model, backend, alphabet["token_ids"]))
    toy = coupled_toy_scorer(V)
    toy_seqs = np.random.default_rng(args.seed + 3).integers(0, V, size=(args.audit_windows, args.audit_seq_len + 1))
    results["order_audit_toy"], results["normalization_model"], results["normalization_toy"] = {}, {}, {}
    results["normalization_alphabet"] = alphabet
    for name in decoders:
        audit = order_audit(toy, toy_seqs, name, settings.replace(vocab_size=V), tolerance=tolerance)
        results["order_audit_toy"][name] = audit
        add_row("order (toy Markov)", name, audit["passed"], audit["max_change"], "max change (nats)")
    F = args.n_random
    for label, scorer, store in (("model", restricted, results["normalization_model"]),
                                 ("toy Markov", toy, results["normalization_toy"])):
        for name in decoders:
            # The sharp line: each fill realization is its own code and must sum to 1, two-sided.
            per_fill = audits.per_fill_normalization_audit(scorer, name, settings.replace(vocab_size=V), T=T,
                                                           tolerance=NORMALIZATION_TOL)
            store[f"{name}/per_fill"] = per_fill
            add_row(f"normalization per fill ({label}, V={V}, T={T}, {F} fills)", name, per_fill["passed"],
                    per_fill["max_abs_deviation"], "max |sum - 1| over fills")
            # The weaker line: the F-fill mean is at most 1 (AM-GM).
            norm = audits.normalization_audit(scorer, name, settings.replace(vocab_size=V), T=T)
            norm["passed"] = normalization_passed(norm)
            store[f"{name}/n_random={F}"] = norm
            add_row(f"normalization AM-GM bound ({label}, V={V}, T={T}, n_random={F})", name, norm["passed"],
                    norm["total_prob"], "total prob")

    failures = [f"{r['check']}: {r['decoder']}" for r in rows if r["counts_as_failure"]]
    if not attention["passed"]:
        failures.insert(0, "attention: causal prefix changed or a mode did not read its context")
    expected = [f"{r['check']}: {r['decoder']}" for r in rows if r["result"] == "FAIL" and not r["counts_as_failure"]]
    results.update(rows=rows, failures=failures, expected_failures=expected, order_tolerance=tolerance,
                   normalization_tolerance=NORMALIZATION_TOL, seconds=time.perf_counter() - t0)
    return results


# ----------------------------------------------------------------------------- report


def print_report(result: dict) -> None:
    att = result["attention"]
    print(f"model:{result['model_source']} params:{result['params']} backend:{result['backend']} "
          f"device:{result['device']} "
          f"precision:{result['precision']} order_tolerance:{result['order_tolerance']:.0e}")
    print(f"attention (positions 0..{att['split'] - 1} equal, {att['split']}..{att['length'] - 1} differ):")
    print(f"  causal         prefix max|dlogit|:{att['causal']['prefix_max_change']:.3e} (must be exactly 0) "
          f"suffix:{att['causal']['suffix_max_change']:.3e} (must be > 0)")
    print(f"  bidirectional  prefix max|dlogit|:{att['bidirectional']['prefix_max_change']:.3e} (must be > 0) "
          f"suffix:{att['bidirectional']['suffix_max_change']:.3e}")
    print(f"  attention: {'PASS' if att['passed'] else 'FAIL'}")
    header = f"{'check':<50} {'decoder':<18} {'claims valid?':<13} {'result':<6} {'largest change / total prob':<28} note"
    print(header)
    print("-" * len(header))
    for r in result["rows"]:
        value = f"{r['value']:.6e}" if r["value_name"].startswith("max") else f"{r['value']:.12f}"
        print(f"{r['check']:<50} {r['decoder']:<18} {'yes' if r['claims_valid'] else 'no':<13} "
              f"{r['result']:<6} {value:<28} {r['note']}")
    if result["expected_failures"]:
        print(f"expected failures ({len(result['expected_failures'])}): decoders that do not claim to be a "
              "valid code length (cf.VALID false); they do not change the exit status")
    if result["failures"]:
        print(f"FAILED ({len(result['failures'])}): " + "; ".join(result["failures"]))
    else:
        print("OK: every decoder that claims to be a valid code length passed every check")
    print(f"seconds:{result['seconds']:.1f} json:{result['json_out']}")


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help=".npz or .pt: ours (carries its config) or the original record's "
                                             "(with --xsa_last_n or --original_arch)")
    source.add_argument("--random_init", action="store_true", help="a tiny random-init GPT (zero-init matrices re-drawn)")
    add_checkpoint_flags(p)
    p.add_argument("--vocab_size", type=int, default=64, help="--random_init only")
    p.add_argument("--data_dir", default=None, help="optional: audit validation windows instead of random tokens")
    p.add_argument("--tokenizer_path", default=None, help="with --data_dir; none: the tokenizer named in its meta.json")
    p.add_argument("--decoders", default="all", help="comma-separated cf decoders, or all")
    p.add_argument("--stride", type=int, default=2, help="CF skeleton stride s (METHOD.md §5)")
    p.add_argument("--rounds", type=int, default=2, help="CF fill rounds r (METHOD.md §5)")
    p.add_argument("--n_random", type=int, default=3, help="random fills averaged per CF pass")
    p.add_argument("--seed", type=int, default=42, help="audited windows and the CF fill")
    p.add_argument("--audit_windows", type=int, default=2, help="windows for the order audit")
    p.add_argument("--audit_seq_len", type=int, default=16, help="targets per order-audit window")
    p.add_argument("--norm_vocab", type=int, default=4, help="V of the normalization audit")
    p.add_argument("--norm_len", type=int, default=6, help="T of the normalization audit (V**T sequences)")
    p.add_argument("--tolerance", type=float, default=None,
                   help=f"order-audit tolerance in nats (default {ORDER_TOL['float32']:g} float32, "
                        f"{ORDER_TOL['bf16']:g} bf16)")
    add_backend_flags(p)
    p.add_argument("--json_out", default=None,
                   help="default: next to the checkpoint (<stem>.leakage.json); --random_init: none unless given")
    return p


def validate_args(args) -> list[str]:
    # A sequence of one token has nothing decoded after anything: the audits need at least two.
    for flag, minimum in (("stride", 2), ("rounds", 1), ("n_random", 1), ("audit_windows", 1),
                          ("audit_seq_len", 2), ("norm_vocab", 2), ("norm_len", 2), ("vocab_size", 2)):
        if getattr(args, flag) < minimum:
            raise UsageError(f"--{flag} must be >= {minimum}, got {getattr(args, flag)}")
    if args.norm_vocab ** args.norm_len > 200_000:
        raise UsageError(f"--norm_vocab ** --norm_len = {args.norm_vocab ** args.norm_len} sequences; keep it <= 200000")
    if args.tolerance is not None and args.tolerance < 0:
        raise UsageError("--tolerance must be >= 0")
    if args.tokenizer_path and not args.data_dir:
        raise UsageError("--tokenizer_path needs --data_dir (the tokenizer is only used to check the data)")
    if args.random_init and (args.xsa_last_n is not None or args.original_arch is not None):
        raise UsageError("--xsa_last_n and --original_arch describe a --checkpoint; --random_init has its own config")
    check_checkpoint_flags(args)
    check_paths(args.checkpoint, args.json_out)
    return parse_decoders(args.decoders)


def main(argv=None, scorer_hook=None) -> int:
    """scorer_hook(scorer) -> scorer wraps the model's scorers before the audits (for tests)."""
    try:
        args = build_parser().parse_args(argv)
        decoders = validate_args(args)
        json_out = Path(args.json_out) if args.json_out else (
            None if args.random_init else default_json_path(args.checkpoint, "leakage"))
        if json_out:
            check_writable_file(json_out, "--json_out")  # before any model is loaded or scored
        backend = load_backend(args.backend, args.device)
        if args.random_init:
            model, config = random_init_model(args.vocab_size, args.seed, backend)
            source = f"random_init(vocab={args.vocab_size}, seed={args.seed}, {TINY_RANDOM_CONFIG})"
        else:
            model, config, checkpoint_format = load_checkpoint(args.checkpoint, backend, args.xsa_last_n,
                                                               args.original_arch)
            source = f"{args.checkpoint} ({checkpoint_format['format']})"
        val_tokens = tables = None
        tokenizer_check = None
        if args.data_dir:
            tables, tokenizer, val_tokens = load_data(args.data_dir, args.tokenizer_path, config.vocab_size, 0)
            if not args.random_init:
                tokenizer_check = check_tokenizer(args.checkpoint, checkpoint_format, tokenizer, tables)
        result = run_checks(model, backend, args, decoders, val_tokens, scorer_hook, tables)
        result.update(tool="leakage_test", model_source=source, config=config.to_dict(),
                      params=backend.num_params(model), tokenizer_check=tokenizer_check,
                      backend=backend.name, device=backend.device_label, precision=backend.precision,
                      tokens="validation windows" if val_tokens is not None else "uniform random ids",
                      json_out=str(json_out) if json_out else "not written (no --json_out)",
                      exit_status=EXIT_CHECK_FAILED if result["failures"] else EXIT_OK,
                      git_commit=git_commit(REPO_ROOT), versions=versions())
        if json_out:
            write_json(json_out, result)
    except (ValueError, OSError, CheckpointError) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    print_report(result)
    print_tokenizer_note(result)
    return result["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
