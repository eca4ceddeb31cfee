"""Code lengths of a retrofit on held-out code: bits per byte and infill code length.

    eval_bits.py --base_model B --adapter A --out OUT.json [--n_windows 64 --seq_len 512]

Bits per byte on the Python standard library's own sources (the top-level *.py files of the
running interpreter's stdlib folder, sorted; the training data refuses stdlib modules, data.py),
tokenized file by file with eos between files, cut into --n_windows random windows of seq_len + 1
tokens (eval_cf.random_offsets, seed --seed). Bytes of a token: the UTF-8 bytes it stands for
(token_bytes), so the bytes of a file's tokens sum to the file's UTF-8 size. Decoders, through
eval_cf.score_decoders on scoring.RetrofitScorer:
  ar (adapter off) = the base's causal code; ar (causal mode of the retrofit); cf_valid and
  bidir_l2r with the mask fill (valid chain-rule codes of the bidirectional pass; bidir_l2r costs
  one forward per target, --no_l2r skips it); the ELBO (--elbo_samples; an upper bound, valid in
  expectation). Every one is a valid code length (cf.py, elbo.py); each carries a percentile
  bootstrap CI over windows, and the paired differences to the base's ar.

Infill code length on the single-line infilling tasks (infill.py): the line's tokens given the
prefix only (causal chain rule; base and retrofit) and given prefix AND suffix (bidirectional
chain rule, scoring.bidir_line_nll), both given the line's token count L; the code of L itself,
-log2 P(L) with the data-free prior P(L) = 1 / (L (L + 1)), is the same for all and reported once.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

from meadow_golf.common.cli_help import HelpFormatter


def _byte_decoder() -> dict[str, int]:
    """The inverse of the byte-level BPE alphabet (bytes 0..255 shown as printable characters)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + n)] = b
            n += 1
    return chars


def token_bytes(tokenizer, ids: list[int]) -> np.ndarray:
    """UTF-8 bytes each token stands for: a byte-level token's length in the byte alphabet, else
    (special tokens, other tokenizers) the UTF-8 length of its own decoding."""
    alphabet = _byte_decoder()
    out = np.empty(len(ids), dtype=np.int64)
    for i, (tid, piece) in enumerate(zip(ids, tokenizer.convert_ids_to_tokens(ids))):
        if piece is not None and all(ch in alphabet for ch in piece) and tid not in tokenizer.all_special_ids:
            out[i] = len(piece)
        else:
            out[i] = len(tokenizer.decode([tid]).encode("utf-8"))
    return out


def stdlib_files() -> list[Path]:
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def stdlib_stream(tokenizer, max_tokens: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(token ids, bytes per token, what was read), files in order until max_tokens."""
    ids, nbytes, names, digest = [], [], [], hashlib.sha256()
    eos = tokenizer.eos_token_id
    for path in stdlib_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        t = tokenizer(text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        ids += t
        nbytes += token_bytes(tokenizer, t).tolist()
        names.append(path.name)
        digest.update(path.read_bytes())
        if len(ids) >= max_tokens:
            break
    return np.array(ids, dtype=np.int64), np.array(nbytes, dtype=np.int64), {
        "files": len(names), "first": names[0], "last": names[-1], "sha256": digest.hexdigest(),
        "folder": "sysconfig stdlib (top-level *.py, sorted)", "python": sys.version.split()[0]}


def length_bits(L: int) -> float:
    return math.log2(L * (L + 1))


def build_parser() -> argparse.ArgumentParser:
    from meadow_golf.eval.eval_common import OneLineParser
    from meadow_golf.retrofit.evaluate import add_model_flags

    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_flags(p)
    p.add_argument("--n_windows", type=int, default=64, help="random windows of the stdlib stream scored")
    p.add_argument("--seq_len", type=int, default=512, help="targets per window (a window holds seq_len + 1 tokens)")
    p.add_argument("--batch_size", type=int, default=8, help="windows per forward")
    p.add_argument("--seed", type=int, default=42, help="seed of the window offsets, the CF decoders and the ELBO noise")
    p.add_argument("--elbo_samples", type=int, default=4, help="noise samples of the ELBO (0 skips it)")
    p.add_argument("--no_l2r", action="store_true", help="skip bidir_l2r (one forward per target)")
    p.add_argument("--stdlib_tokens", type=int, default=2_000_000, help="tokens of stdlib source read")
    return p


def main(argv=None) -> int:
    from meadow_golf.retrofit.base import RetrofitError
    from meadow_golf.retrofit.evaluate import check_model_flags, load_scorers, write_outputs

    args = build_parser().parse_args(argv)
    try:
        check_model_flags(args)
        if min(args.n_windows, args.seq_len - 1, args.batch_size, args.stdlib_tokens) < 1 or args.elbo_samples < 0:
            raise RetrofitError("--n_windows, --batch_size, --stdlib_tokens >= 1, --seq_len >= 2, --elbo_samples >= 0")
        if args.model != "retrofit":
            raise RetrofitError("eval_bits scores the retrofit (its adapter-off ar is the base's code)")
    except (RetrofitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from meadow_golf.eval.eval_cf import score_decoders, score_elbo
    from meadow_golf.eval.eval_common import Progress, gather_windows, random_offsets
    from meadow_golf.retrofit import infill
    from meadow_golf.retrofit.scoring import RetrofitScorer, bidir_line_nll, causal_line_nll
    from meadow_golf.report.stats import window_bootstrap

    t0 = time.perf_counter()
    base, causal, bid, info = load_scorers(args)
    off = RetrofitScorer(causal.model, base, convention=info["convention"], adapter=False, device=causal.device,
                         autocast=causal.autocast)
    tok = base.tokenizer
    ids, nbytes, read = stdlib_stream(tok, args.stdlib_tokens)
    T = args.seq_len
    offsets = random_offsets(len(ids), T + 1, args.n_windows, args.seed, "the stdlib stream")
    windows = gather_windows(ids, offsets, T + 1)
    target_bytes = gather_windows(nbytes, offsets, T + 1)[:, 1:]
    wbytes = target_bytes.sum(axis=1)
    from meadow_golf.eval import cf

    settings = cf.CFSettings(vocab_size=base.n_real, stride=2, rounds=2, n_random=1, seed=args.seed,
                             mask_id=base.mask_id)
    per: dict = {}
    res = {}
    pw_off: dict = {}
    res["ar_adapter_off (the base)"] = score_decoders(off, windows, target_bytes, ["ar"], batch_size=args.batch_size,
                                                      settings=settings, per_window=pw_off)["ar"]
    per["ar_adapter_off (the base)"] = pw_off["nll_ar"]
    pw_c: dict = {}
    res[f"ar (retrofit causal mode, adapter {'on' if causal.adapter else 'off'})"] = score_decoders(
        causal, windows, target_bytes, ["ar"], batch_size=args.batch_size, settings=settings,
        per_window=pw_c)["ar"]
    per[f"ar (retrofit causal mode, adapter {'on' if causal.adapter else 'off'})"] = pw_c["nll_ar"]
    decs = ["cf_valid"] + ([] if args.no_l2r else ["bidir_l2r"])
    pw_b: dict = {}
    for name, r in score_decoders(bid, windows, target_bytes, decs, batch_size=args.batch_size,
                                  settings=settings, per_window=pw_b).items():
        res[f"{name} (mask fill)"], per[f"{name} (mask fill)"] = r, pw_b[f"nll_{name}"]
    if args.elbo_samples:
        res["elbo (upper bound, valid in expectation)"] = score_elbo(
            bid, windows, target_bytes, args.elbo_samples, seed=args.seed, mask_id=base.mask_id,
            batch_size=args.batch_size, per_window=pw_b)
        per["elbo (upper bound, valid in expectation)"] = pw_b["nll_elbo"]
    base_nll = per["ar_adapter_off (the base)"]
    bpb = {k: window_bootstrap([(v, wbytes)], 2000, 0) for k, v in per.items()}
    paired = {f"{k} - base ar": window_bootstrap([(v, wbytes), (base_nll, wbytes)], 2000, 0)
              for k, v in per.items() if v is not base_nll}

    tasks = infill.single_line_tasks()
    tasks = tasks[: args.limit] if args.limit else tasks
    items, bar = [], Progress(len(tasks), "infill_code_length", every=1)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    for i, task in enumerate(tasks):
        prefix, line, suffix = enc(task["prompt"]) or [base.start_id], enc(task["canonical_solution"]), enc(task["suffix"])
        items.append({"task_id": task["task_id"], "tokens": len(line), "bytes": len(task["canonical_solution"].encode()),
                      "causal_base": float(causal_line_nll(off, prefix, line).sum()),
                      "causal_retrofit": float(causal_line_nll(causal, prefix, line).sum()),
                      "bidir_prefix_suffix": float(bidir_line_nll(bid, prefix, line, suffix).sum()),
                      "length_bits": length_bits(len(line))})
        bar.update(i + 1)
    lb = np.array([it["bytes"] for it in items])
    lines = {k: window_bootstrap([(np.array([it[k] for it in items]), lb)], 2000, 0)
             for k in ("causal_base", "causal_retrofit", "bidir_prefix_suffix")}
    lines["bidir_prefix_suffix - causal_base"] = window_bootstrap(
        [(np.array([it["bidir_prefix_suffix"] for it in items]), lb), (np.array([it["causal_base"] for it in items]), lb)],
        2000, 0)
    result = {"tool": "eval_bits", "base_model": args.base_model, "adapter": args.adapter, "retrofit": info,
              "stdlib": read, "windows": {"count": int(len(offsets)), "seq_len": T, "seed": args.seed,
                                          "bytes": int(wbytes.sum())},
              "bpb": bpb, "bpb_paired": paired, "decoders": res,
              "bpb_note": "every entry is a valid code length (cf.py, elbo.py); CIs: percentile bootstrap over windows",
              "infill_code_length": {"tasks": len(items), "bits_per_byte": lines,
                                     "length_code_bits_mean": float(np.mean([it["length_bits"] for it in items])),
                                     "note": "per line, given its token count L; the code of L (-log2 1/(L(L+1))) "
                                             "is the same for every model and reported separately"},
              "seconds": time.perf_counter() - t0}
    write_outputs(Path(args.out), result, items)
    print("bits " + " ".join(f"{k}:{v['estimate']:.4f}" for k, v in bpb.items()))
    return 0
