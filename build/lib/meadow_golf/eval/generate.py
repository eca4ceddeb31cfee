"""What the two modes of a checkpoint can generate: bidirectional span fill and causal sampling.

Span fill (mask-predict style, greedy). In each validation window one span of L tokens is
masked: its tokens are replaced by uniform random ids, as the D3PM-uniform training noise
does (the model has no mask token). Then, for R rounds, the model reads the window
bidirectionally, predicts every still-masked position, and commits the most confident ones:
after round k, ceil(L*(k+1)/R) of the L positions are committed (rounds that would commit
nothing are skipped, so min(L, R) forwards). Uncommitted positions keep their random ids.
Reported per configuration (span L x rounds R): the exact-match rate per token and per span.
Every configuration of one span length uses the same windows, span positions and noise.

Causal sampling: a text prompt is encoded with the data's tokenizer (BOS first, as every
document in the shards starts), then extended greedily (--temperature 0) or by sampling with
a seeded numpy generator (the same samples from either backend given the same logits), and
decoded back to text.

    python gen_test.py --checkpoint runs/x/final_model.npz --data_dir data/shakespeare --prompt "ROMEO:"
    python gen_test.py --checkpoint 11L_w0.3.npz --original_arch 11L --data_dir DIR   (an original record's .npz)
    python gen_test.py --backend mlx --checkpoint runs/x/final_model.npz --data_dir DIR   (MLX, no torch imported)

Exit status: 0 done; 1 bad input (one `error:` line).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from meadow_golf.eval.backends import load_backend
from meadow_golf.model.checkpoint import CheckpointError
from meadow_golf.common.paths import check_writable_file
from meadow_golf.eval.eval_common import (EXIT_BAD_INPUT, EXIT_OK, OneLineParser, UsageError, add_backend_flags,
                                     add_checkpoint_flags, check_checkpoint_flags, check_paths, check_tokenizer,
                                     default_json_path, error_line, gather_windows, load_checkpoint, load_data,
                                     print_tokenizer_note, random_offsets, write_json)
from meadow_golf.common.run_log import git_commit, versions
from meadow_golf.common.cli_help import HelpFormatter

REPO_ROOT = Path(__file__).resolve().parents[3]
BOS_ID = 1
CONTEXT_SHOWN = 10  # tokens of context printed on each side of an example span


# ----------------------------------------------------------------------------- span fill


def committed_after(round_index: int, span: int, rounds: int) -> int:
    """How many of the span's positions are committed once round `round_index` is done."""
    return math.ceil(span * (round_index + 1) / rounds)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def fill_spans(model, backend, windows: np.ndarray, starts: np.ndarray, noise: np.ndarray, rounds: int,
               predict_vocab: int) -> tuple[np.ndarray, list[int], int]:
    """Greedy mask-predict fill of one span per window, all windows in one batch.

    windows (B, T) int64, starts (B,), noise (B, L) random ids put in the span before round 0.
    Predictions are restricted to ids < predict_vocab (the tokenizer's pieces). Returns
    (fills (B, L), positions committed in each round summed over the batch, forwards run).
    backend: a backend_base.EvalBackend. The choice of what to commit runs on the host in numpy, the
    same for either backend.
    """
    B, L = noise.shape
    rows = np.arange(B)[:, None]
    positions = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(L)[None, :]
    x = np.array(windows, dtype=np.int64)
    x[rows, positions] = noise
    committed = np.zeros((B, L), dtype=bool)
    fills = np.full((B, L), -1, dtype=np.int64)
    commits, forwards = [], 0
    for k in range(rounds):
        n_commit = committed_after(k, L, rounds) - (committed_after(k - 1, L, rounds) if k else 0)
        if n_commit == 0:
            commits.append(0)
            continue
        logits = backend.logits(model, x, is_causal=False)
        forwards += 1
        probs = softmax(logits[rows, positions][..., :predict_vocab])  # (B, L, V')
        prediction, confidence = probs.argmax(axis=-1), probs.max(axis=-1)
        confidence[committed] = -1.0  # committed positions are never re-chosen
        # The n_commit most confident offsets per row; a stable sort breaks ties by position.
        chosen = np.argsort(-confidence, axis=1, kind="stable")[:, :n_commit]
        fills[rows, chosen] = prediction[rows, chosen]
        committed[rows, chosen] = True
        x[rows, np.take_along_axis(positions, chosen, axis=1)] = prediction[rows, chosen]
        commits.append(int(n_commit * B))
    if not bool(committed.all()):
        raise AssertionError("some span positions were never committed (bug)")
    return fills, commits, forwards


def span_fill_experiment(model, backend, tokens: np.ndarray, args, vocab_size: int, predict_vocab: int, sp) -> dict:
    T = args.seq_len
    offsets = random_offsets(len(tokens), T, args.n_windows, args.seed, f"{args.data_dir} (--seq_len {T})")
    windows = gather_windows(tokens, offsets, T)
    rng = np.random.default_rng([args.seed, 1])  # span positions and noise; windows have their own stream
    configs, examples = [], []
    for L in args.spans:
        starts = rng.integers(0, T - L + 1, size=args.n_windows)
        noise = rng.integers(0, vocab_size, size=(args.n_windows, L))
        truth = windows[np.arange(args.n_windows)[:, None], starts[:, None] + np.arange(L)[None, :]]
        for R in args.rounds:
            t0 = time.perf_counter()
            parts = [fill_spans(model, backend, windows[i : i + args.batch_size], starts[i : i + args.batch_size],
                                noise[i : i + args.batch_size], R, predict_vocab)
                     for i in range(0, args.n_windows, args.batch_size)]
            fills = np.concatenate([p[0] for p in parts])
            commits = np.sum([p[1] for p in parts], axis=0).astype(int).tolist()
            correct = fills == truth
            configs.append(dict(span=L, rounds=R, exact_match_token=float(correct.mean()),
                                exact_match_span=float(correct.all(axis=1).mean()), n_spans=args.n_windows,
                                n_tokens=int(correct.size), commits_per_round=commits,
                                forwards_per_batch=parts[0][2], seconds=time.perf_counter() - t0))
            for i in range(min(args.n_examples, args.n_windows)):
                examples.append(example(sp, windows[i], int(starts[i]), fills[i], L, R, i))
            print(f"span:{L} rounds:{R} exact_match_token:{configs[-1]['exact_match_token']:.4f} "
                  f"exact_match_span:{configs[-1]['exact_match_span']:.4f} n_spans:{args.n_windows} "
                  f"forwards:{parts[0][2]}", flush=True)
    return dict(n_windows=args.n_windows, seq_len=T, seed=args.seed, spans=args.spans, rounds=args.rounds,
                noise="uniform over the model vocabulary (D3PM-uniform)", configs=configs, examples=examples)


def decode(sp, ids) -> str:
    return sp.decode([int(i) for i in ids])


def example(sp, window: np.ndarray, start: int, fill: np.ndarray, span: int, rounds: int, index: int) -> dict:
    left = window[max(0, start - CONTEXT_SHOWN) : start]
    right = window[start + span : start + span + CONTEXT_SHOWN]
    truth = window[start : start + span]
    return dict(span=span, rounds=rounds, window=index, start=start, left_text=decode(sp, left),
                truth_text=decode(sp, truth), fill_text=decode(sp, fill), right_text=decode(sp, right),
                truth_ids=truth.tolist(), fill_ids=fill.tolist(), exact=bool(np.array_equal(truth, fill)))


# ----------------------------------------------------------------------------- causal sampling


def sample(model, backend, prompt_ids: list[int], max_new_tokens: int, temperature: float, n_samples: int,
           seed: int, predict_vocab: int) -> np.ndarray:
    """(n_samples, max_new_tokens) new ids; the n samples are generated together in one batch.

    No KV cache: each step re-reads the whole sequence (short generations only). The draws are
    numpy's (default_rng(seed), inverse CDF of the float64 softmax), so the same logits give the
    same samples on either backend.
    """
    rng = np.random.default_rng(seed)
    x = np.array([prompt_ids] * n_samples, dtype=np.int64)
    for _ in range(max_new_tokens):
        logits = backend.logits(model, x, is_causal=True)[:, -1, :predict_vocab]
        if temperature == 0:
            nxt = logits.argmax(axis=-1)
        else:
            cdf = np.cumsum(softmax(logits / temperature), axis=-1)
            u = rng.random(n_samples) * cdf[:, -1]
            nxt = np.minimum((cdf <= u[:, None]).sum(axis=-1), predict_vocab - 1)
        x = np.concatenate([x, nxt[:, None].astype(np.int64)], axis=1)
    return x[:, len(prompt_ids) :]


def sampling_experiment(model, backend, args, predict_vocab: int, sp) -> dict:
    prompt_ids = [BOS_ID] + [int(i) for i in sp.encode(args.prompt)]
    new = sample(model, backend, prompt_ids, args.max_new_tokens, args.temperature, args.n_samples,
                 args.seed, predict_vocab)
    samples = [dict(ids=row.tolist(), text=decode(sp, row), full_text=decode(sp, prompt_ids[1:] + row.tolist()))
               for row in new]
    return dict(prompt=args.prompt, prompt_ids=prompt_ids, temperature=args.temperature,
                mode="greedy" if args.temperature == 0 else "sampling", seed=args.seed,
                max_new_tokens=args.max_new_tokens, samples=samples)


# ----------------------------------------------------------------------------- report


def print_examples(result: dict) -> None:
    fill = result["fill"]
    shown_rounds = max(fill["rounds"])
    for ex in fill["examples"]:
        if ex["rounds"] != shown_rounds:
            continue
        print(f"example span:{ex['span']} rounds:{ex['rounds']} window:{ex['window']} "
              f"{'exact' if ex['exact'] else 'differs'}")
        print(f"  context: {ex['left_text']!r} [...] {ex['right_text']!r}")
        print(f"  truth:   {ex['truth_text']!r}")
        print(f"  fill:    {ex['fill_text']!r}")
    s = result["sample"]
    print(f"causal {s['mode']} (temperature {s['temperature']}, seed {s['seed']}) from prompt {s['prompt']!r}:")
    for i, smp in enumerate(s["samples"]):
        print(f"  sample {i}: {smp['full_text']!r}")
    print(f"seconds:{result['seconds']:.1f} json:{result['json_out']}")


# ----------------------------------------------------------------------------- main


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help=".npz or .pt: ours (carries its config) or the original "
                                                     "record's (with --xsa_last_n or --original_arch)")
    add_checkpoint_flags(p)
    p.add_argument("--data_dir", required=True, help="prepared data folder: validation windows and tokenizer")
    p.add_argument("--tokenizer_path", default=None, help="default: the tokenizer named in DATA_DIR/meta.json")
    p.add_argument("--n_windows", type=int, default=32, help="validation windows (one span each)")
    p.add_argument("--seq_len", type=int, default=128, help="tokens per window")
    p.add_argument("--spans", type=int_list, default=[1, 4, 16], help="span lengths, e.g. 1,4,16")
    p.add_argument("--rounds", type=int_list, default=[1, 2, 4], help="fill rounds, e.g. 1,2,4")
    p.add_argument("--batch_size", type=int, default=16, help="windows per forward")
    p.add_argument("--n_examples", type=int, default=3, help="examples kept per configuration")
    p.add_argument("--prompt", default="The ", help="text the free-running samples continue")
    p.add_argument("--max_new_tokens", type=int, default=48, help="tokens generated per sample")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--n_samples", type=int, default=1, help="samples generated from the prompt (one batch)")
    p.add_argument("--seed", type=int, default=42, help="windows, spans, noise and sampling")
    add_backend_flags(p)
    p.add_argument("--json_out", default=None, help="default: next to the checkpoint, <stem>.gen_test.json")
    return p


def validate_args(args) -> None:
    for flag, minimum in (("n_windows", 1), ("seq_len", 2), ("batch_size", 1), ("n_examples", 0),
                          ("max_new_tokens", 0), ("n_samples", 1)):
        if getattr(args, flag) < minimum:
            raise UsageError(f"--{flag} must be >= {minimum}, got {getattr(args, flag)}")
    if any(L < 1 or L > args.seq_len for L in args.spans):
        raise UsageError(f"--spans must lie in [1, --seq_len={args.seq_len}], got {args.spans}")
    if any(R < 1 for R in args.rounds):
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    if not args.temperature >= 0 or not math.isfinite(args.temperature):
        raise UsageError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    check_checkpoint_flags(args)
    check_paths(args.checkpoint, args.json_out)


def load_sentencepiece(path: Path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(path))
    except Exception as e:  # sentencepiece raises OSError / RuntimeError for a bad file
        raise ValueError(f"{path}: not a SentencePiece model ({e})") from None
    return sp


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        validate_args(args)
        json_out = Path(args.json_out) if args.json_out else default_json_path(args.checkpoint, "gen_test")
        check_writable_file(json_out, "--json_out")  # before any model is loaded or sampled
        t0 = time.perf_counter()
        backend = load_backend(args.backend, args.device)
        model, config, checkpoint_format = load_checkpoint(args.checkpoint, backend, args.xsa_last_n,
                                                           args.original_arch)
        tables, tokenizer, tokens = load_data(args.data_dir, args.tokenizer_path, config.vocab_size, 0)
        tokenizer_check = check_tokenizer(args.checkpoint, checkpoint_format, tokenizer, tables)
        sp = load_sentencepiece(tokenizer)
        # Predictions come from the tokenizer's pieces only, so every output decodes to text.
        predict_vocab = tables.vocab_size
        result = dict(tool="gen_test", checkpoint=str(args.checkpoint), checkpoint_format=checkpoint_format,
                      config=config.to_dict(),
                      data_dir=str(args.data_dir), tokenizer=str(tokenizer), tokenizer_check=tokenizer_check,
                      backend=backend.name, device=backend.device_label, precision=backend.precision)
        result["fill"] = span_fill_experiment(model, backend, tokens, args, config.vocab_size, predict_vocab, sp)
        result["sample"] = sampling_experiment(model, backend, args, predict_vocab, sp)
        result.update(seconds=time.perf_counter() - t0, json_out=str(json_out), git_commit=git_commit(REPO_ROOT),
                      versions=versions())
        write_json(json_out, result)
    except (ValueError, OSError, CheckpointError) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    print_examples(result)
    print_tokenizer_note(result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
