"""The CPU record of the retrofit on a pretrained model of our own (README.md of
experiments/2026-12-06_lora_retrofit, "CPU record").

    python experiments/2026-12-06_lora_retrofit/gpt_record.py --out_dir experiments/2026-12-06_lora_retrofit/cpu_record

Base: the matched ablation's pretrained causal-only 4L-d192 control (cells/11L_w0_s1337, 120 AR
steps on Shakespeare). Each retrofit cell trains LoRA (+ the mask row) on it for --steps joint
steps (AR + w * DN, 2 passes a step) on the training tokens AFTER the 120 x 4096 the control saw.
At --steps 60 a cell's passes (60 x 2) plus the control's 120 equal the from-scratch joint
model's 120 x 2 (cells/11L_w0.3_s1337): matched compute in forward-backward passes of the same
batch (a LoRA step still runs the whole network forward and backward).

Evaluated per cell, on eval_cf.py's windows of those cells (64 windows of 256 targets, seed 42, all
validation tokens; the offsets are checked equal to the committed per-window files): Pure-AR with
the adapter on and off (off must reproduce the control's per-window NLL as the package's TorchScorer
scores the same int6 artifact), the valid
bidirectional codes cf_valid and bidir_l2r with the mask fill, and the ELBO. Line infill on the
three validation plays: --n_lines verse lines, each given the --context lines before and after;
the line's code length given its prefix only (causal) and given prefix AND suffix (bidirectional
chain rule), per model; greedy CF infill samples. Differences carry paired percentile bootstrap
CIs (summarize.window_bootstrap) over windows, or over lines. A cell whose eval_gpt.json exists is
not retrained or rescored (a rerun resumes); the references are always rescored (minutes).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.common.cli_help import HelpFormatter
from meadow_golf.retrofit import generate, train
from meadow_golf.retrofit.base import Base
from meadow_golf.retrofit.scoring import RetrofitScorer, bidir_line_nll, causal_line_nll, length_code

ABLATION = Path("experiments/2026-04-09_matched_ablation/cpu_record/cells")
CONTROL, JOINT = ABLATION / "11L_w0_s1337", ABLATION / "11L_w0.3_s1337"
CONTROL_TOKENS = 120 * 4096  # the tokens the control was trained on (its results.json: tokens_seen)
LINE_STREAM = 0x6C696E65  # "line": the line sample's generator, default_rng([seed, LINE_STREAM])
FILL_STREAM = 0x66696C6C  # "fill": the joint model's random fill of a line, default_rng([seed, FILL_STREAM, i])
N_BOOT, BOOT_SEED = 2000, 0


def verse_lines(text: str) -> list[int]:
    """Indices of verse lines: not blank, not a heading (#), speaker (**) or direction (_), 3+ words."""
    out = []
    for i, raw in enumerate(text.splitlines()):
        s = raw.strip()
        if s and not s.startswith(("#", "**", "_")) and len(s.split()) >= 3:
            out.append(i)
    return out


def line_items(plays: dict[str, str], n: int, context: int, seed: int) -> list[dict]:
    """n verse lines drawn without replacement (default_rng([seed, LINE_STREAM])) with the
    `context` raw lines before and after each, whitespace-joined as the tokenizer normalizes."""
    pool = [(name, i) for name, text in sorted(plays.items()) for i in verse_lines(text)]
    rng = np.random.default_rng([seed, LINE_STREAM])
    chosen = sorted(rng.choice(len(pool), size=min(n, len(pool)), replace=False).tolist())
    items = []
    for k in chosen:
        name, i = pool[k]
        lines = plays[name].splitlines()
        join = lambda part: " ".join(s.strip() for s in part if s.strip())  # noqa: E731
        items.append({"play": name, "line_index": i, "prefix": join(lines[max(0, i - context):i]),
                      "line": lines[i].strip(), "suffix": join(lines[i + 1:i + 1 + context])})
    return items


def bootstrap(nll: np.ndarray, nbytes: np.ndarray, other: np.ndarray | None = None) -> dict:
    from meadow_golf.report.summarize import window_bootstrap

    cells = [(nll, nbytes)] + ([(other, nbytes)] if other is not None else [])
    return window_bootstrap(cells, N_BOOT, BOOT_SEED)


def gpt_base(model, n_real: int, mask_id: int) -> Base:
    return Base(kind="gpt", model=model, tokenizer=None, n_real=n_real, mask_id=mask_id, start_id=mask_id,
                eos_id=None, source="", embed_name="tok_emb")


def score_windows(scorer, windows, target_bytes, decoders, elbo_samples: int, mask_id: int | None) -> tuple:
    from meadow_golf.eval import cf
    from meadow_golf.eval.eval_cf import score_decoders, score_elbo

    per_window: dict = {}
    settings = cf.CFSettings(vocab_size=1024, stride=2, rounds=2, n_random=1 if mask_id is not None else 3, seed=42,
                             mask_id=mask_id)
    res = score_decoders(scorer, windows, target_bytes, decoders, batch_size=16, settings=settings,
                         per_window=per_window)
    if elbo_samples:
        res["elbo"] = score_elbo(scorer, windows, target_bytes, elbo_samples, seed=42, mask_id=mask_id,
                                 batch_size=16, per_window=per_window)
    return res, per_window


def line_codes(scorer, items_tok, tables, fill_seed: int | None = None) -> dict:
    """Per line: causal NLL (prefix only) and bidirectional chain-rule NLL (prefix + suffix), nats."""
    causal, bid, nbytes = [], [], []
    for i, it in enumerate(items_tok):
        p, l, s = it["prefix_ids"], it["line_ids"], it["suffix_ids"]
        fill = None
        if fill_seed is not None:
            fill = np.random.default_rng([fill_seed, FILL_STREAM, i]).integers(0, 1024, size=len(l)).tolist()
        causal.append(float(causal_line_nll(scorer, p, l).sum()))
        bid.append(float(bidir_line_nll(scorer, p, l, s, fill=fill).sum()))
        nbytes.append(int(tables.stream_bytes(np.array([p[-1]] + l)).sum()))
    return {"causal": np.array(causal), "bidir": np.array(bid), "bytes": np.array(nbytes)}


def savez_atomic(path: Path, **arrays) -> None:
    """An .npz written in one atomic step (a killed run leaves the old file or none)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--out_dir", required=True, help="folder of the record (cells/retrofit_CONVENTION/ and the summary)")
    p.add_argument("--data_dir", default="data/shakespeare", help="the prepared Shakespeare folder (training and validation tokens)")
    p.add_argument("--cells", default="shift,inplace", help="conventions to train, one cell each")
    p.add_argument("--steps", type=int, default=60, help="joint training steps per cell")
    p.add_argument("--w", type=float, default=0.3, help="weight of the denoising loss")
    p.add_argument("--lora_r", type=int, default=8, help="LoRA rank (alpha is 2 r)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of each cell's training")
    p.add_argument("--n_lines", type=int, default=120, help="validation verse lines infilled")
    p.add_argument("--context", type=int, default=4, help="lines of context before and after each infilled line")
    p.add_argument("--elbo_samples", type=int, default=4, help="noise samples of each cell's ELBO (0 skips it)")
    p.add_argument("--samples", type=int, default=6, help="greedy CF infill samples shown")
    p.add_argument("--n_windows", type=int, default=64, help="the first N of the 64 windows (a quick check)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from meadow_golf.eval.eval_common import gather_windows, load_data, random_offsets
    from meadow_golf.eval.torch_backend import load_model
    from meadow_golf.data.corpus_shakespeare import default_cache_dir, ensure_wheel, read_plays, split_plays
    import sentencepiece as spm

    out = Path(args.out_dir)
    conventions = [c for c in args.cells.split(",") if c]
    if not (CONTROL / "final_model.int6.lzma").is_file() or not (JOINT / "final_model.int6.lzma").is_file():
        print(f"error: run from the repository root ({CONTROL} not found)", file=sys.stderr)
        return 1
    tables, tok_path, tokens = load_data(args.data_dir, None, 1024, 10**9)
    offsets = random_offsets(len(tokens), 257, 64, 42, args.data_dir)
    ref = {name: np.load(cell / "eval_cf.windows.npz") for name, cell in (("control", CONTROL), ("joint", JOINT))}
    for name, z in ref.items():
        if not np.array_equal(z["offsets"], offsets):
            print(f"error: the committed {name} windows differ from eval_cf's seed-42 windows here", file=sys.stderr)
            return 1
    offsets = offsets[: args.n_windows]
    windows = gather_windows(tokens, offsets, 257)
    target_bytes = tables.stream_bytes(windows)
    wbytes = target_bytes.sum(axis=1).astype(np.int64)
    # The committed per-window NLLs were scored from the float final_model.npz, which is not
    # committed; the artifacts here are int6. So both references are rescored from the int6
    # artifacts by the package's own TorchScorer (torch_backend.py), independent of scoring.py.
    from meadow_golf.eval.torch_backend import TorchScorer

    control_model, _ = load_model(CONTROL / "final_model.int6.lzma", torch.device("cpu"))
    joint_model, _ = load_model(JOINT / "final_model.int6.lzma", torch.device("cpu"))
    _, ref_control = score_windows(TorchScorer(control_model, torch.device("cpu")), windows, target_bytes, ["ar"], 0,
                                   None)
    _, ref_joint = score_windows(TorchScorer(joint_model, torch.device("cpu")), windows, target_bytes,
                                 ["ar", "cf_valid"], 0, None)
    committed = {name: {k: z[k][: args.n_windows] for k in ("nll_ar", "nll_cf_valid")} for name, z in ref.items()}
    ref = {"control": ref_control, "joint": ref_joint}

    sp = spm.SentencePieceProcessor(model_file=str(tok_path))
    train_plays, val_plays = split_plays(read_plays(ensure_wheel(default_cache_dir())))
    items = line_items(val_plays, args.n_lines, args.context, 42)
    items_tok = [{**it, "prefix_ids": sp.encode(it["prefix"]), "line_ids": sp.encode(it["line"]),
                  "suffix_ids": sp.encode(it["suffix"])} for it in items]
    train_lengths = [len(sp.encode(t.splitlines()[i].strip())) for t in train_plays.values() for i in verse_lines(t)]
    len_nats = length_code(train_lengths, 64)
    draft_len = int(np.median(train_lengths))
    len_bits = np.array([len_nats[min(len(it["line_ids"]), 64)] / math.log(2) for it in items_tok])

    joint_scorer = RetrofitScorer(joint_model, gpt_base(joint_model, 1024, 1024), convention="inplace")
    joint_lines = line_codes(joint_scorer, items_tok, tables, fill_seed=42)
    summary = {"tool": "gpt_record", "control": str(CONTROL), "joint": str(JOINT), "windows": {
        "count": 64, "seq_len": 256, "seed": 42, "offsets_equal_committed": True},
        "lines": {"count": len(items), "context_lines": args.context, "train_line_median_tokens": draft_len,
                  "length_code_bits_mean": float(len_bits.mean())}, "cells": {}}
    summary["joint_reference"] = {
        "ar_bpb": bootstrap(ref["joint"]["nll_ar"], wbytes),
        "cf_valid_bpb_random_fill": bootstrap(ref["joint"]["nll_cf_valid"], wbytes),
        "control_ar_bpb": bootstrap(ref["control"]["nll_ar"], wbytes),
        "int6_minus_committed_float": {
            "control_ar": bootstrap(ref["control"]["nll_ar"], wbytes, committed["control"]["nll_ar"]),
            "joint_ar": bootstrap(ref["joint"]["nll_ar"], wbytes, committed["joint"]["nll_ar"]),
            "joint_cf_valid": bootstrap(ref["joint"]["nll_cf_valid"], wbytes, committed["joint"]["nll_cf_valid"])},
        "lines_causal_bpb": bootstrap(joint_lines["causal"], joint_lines["bytes"]),
        "lines_bidir_bpb_random_fill": bootstrap(joint_lines["bidir"], joint_lines["bytes"]),
    }
    for conv in conventions:
        cell = out / "cells" / f"retrofit_{conv}"
        if (cell / "eval_gpt.json").is_file():  # a finished cell (rerun = resume): its JSON is the result
            summary["cells"][conv] = json.loads((cell / "eval_gpt.json").read_text())
            continue
        rc = train.main(["--base_model", str(CONTROL / "final_model.int6.lzma"), "--train_data", args.data_dir,
                         "--train_offset", str(CONTROL_TOKENS), "--steps", str(args.steps), "--batch_size", "16",
                         "--seq_len", "256", "--w", str(args.w), "--convention", conv, "--lora_r",
                         str(args.lora_r), "--lora_alpha", str(2 * args.lora_r), "--lr", str(args.lr),
                         "--warmup_steps", "6", "--device", "cpu", "--out_dir", str(cell), "--log_every", "5",
                         "--save_every", "20"])
        if rc != 0:
            return rc
        base, model, info = train.load_retrofit(str(CONTROL / "final_model.int6.lzma"), cell / "adapter")
        on = RetrofitScorer(model, base, convention=conv, adapter=True)
        off = RetrofitScorer(model, base, convention=conv, adapter=False)
        res_off, pw_off = score_windows(off, windows, target_bytes, ["ar"], 0, None)
        res_on, pw_on = score_windows(on, windows, target_bytes, ["ar", "cf_valid", "bidir_l2r"],
                                      args.elbo_samples, base.mask_id)
        off_diff = float(np.max(np.abs(pw_off["nll_ar"] - ref["control"]["nll_ar"])))
        lines_on, lines_off = line_codes(on, items_tok, tables), line_codes(off, items_tok, tables)
        valid = {"cf_valid (mask fill)": pw_on["nll_cf_valid"], "bidir_l2r (mask fill)": pw_on["nll_bidir_l2r"],
                 "elbo (upper bound, valid in expectation)": pw_on["nll_elbo"]}
        c = {"adapter": str(cell / "adapter"), "retrofit": info,
             "adapter_off_ar_max_abs_window_nll_diff_vs_control_torchscorer": off_diff,
             "bpb": {"ar_adapter_off": bootstrap(pw_off["nll_ar"], wbytes),
                     "ar_adapter_on": bootstrap(pw_on["nll_ar"], wbytes),
                     **{k: bootstrap(v, wbytes) for k, v in valid.items()}},
             "paired": {
                 "ar_on_minus_control_ar": bootstrap(pw_on["nll_ar"], wbytes, ref["control"]["nll_ar"]),
                 "ar_on_minus_joint_ar": bootstrap(pw_on["nll_ar"], wbytes, ref["joint"]["nll_ar"]),
                 **{f"{k}_minus_joint_cf_valid": bootstrap(v, wbytes, ref["joint"]["nll_cf_valid"])
                    for k, v in valid.items()},
                 **{f"{k}_minus_control_ar": bootstrap(v, wbytes, ref["control"]["nll_ar"]) for k, v in valid.items()},
             },
             "lines": {
                 "causal_adapter_off_bpb": bootstrap(lines_off["causal"], lines_off["bytes"]),
                 "causal_adapter_on_bpb": bootstrap(lines_on["causal"], lines_on["bytes"]),
                 "bidir_with_suffix_bpb": bootstrap(lines_on["bidir"], lines_on["bytes"]),
                 "bidir_minus_causal_off": bootstrap(lines_on["bidir"], lines_on["bytes"], lines_off["causal"]),
                 "bidir_minus_joint_bidir": bootstrap(lines_on["bidir"], lines_on["bytes"], joint_lines["bidir"]),
                 "bidir_minus_joint_causal": bootstrap(lines_on["bidir"], lines_on["bytes"], joint_lines["causal"]),
             },
             "decoders": {**{f"{k}_adapter_on": v for k, v in res_on.items()}, "ar_adapter_off": res_off["ar"]}}
        samples = []
        for it in items_tok[: args.samples]:
            draft = generate.loop_generate(off, it["prefix_ids"], draft_len)
            fill = generate.bidir_fill(on, it["prefix_ids"], draft_len, it["suffix_ids"])
            oracle = generate.bidir_fill(on, it["prefix_ids"], len(it["line_ids"]), it["suffix_ids"])
            samples.append({"prefix_tail": it["prefix"][-80:], "truth": it["line"], "suffix_head": it["suffix"][:80],
                            "causal_greedy_base": sp.decode(draft), "cf_fill": sp.decode(fill),
                            "bidir_oracle_length (upper bound, uses the true length)": sp.decode(oracle)})
        c["samples"] = samples
        savez_atomic(cell / "eval_windows.npz", offsets=offsets, bytes=wbytes,
                 **{f"on_{k}": v for k, v in pw_on.items()}, off_nll_ar=pw_off["nll_ar"])
        savez_atomic(cell / "eval_lines.npz", bytes=lines_on["bytes"], causal_on=lines_on["causal"],
                 causal_off=lines_off["causal"], bidir_on=lines_on["bidir"], joint_causal=joint_lines["causal"],
                 joint_bidir=joint_lines["bidir"], length_bits=len_bits)
        atomic_write_bytes(cell / "eval_gpt.json", (json.dumps(c, indent=2, default=float) + "\n").encode())
        (cell / "train_state.pt").unlink(missing_ok=True)  # resume state; the adapter is the result
        summary["cells"][conv] = c
    for conv, c in summary["cells"].items():  # pairs within a cell, from its per-window / per-line files
        cell = out / "cells" / f"retrofit_{conv}"
        w, ln = np.load(cell / "eval_windows.npz"), np.load(cell / "eval_lines.npz")
        c["within_cell"] = {
            "windows_bidir_l2r_minus_ar_on": bootstrap(w["on_nll_bidir_l2r"], w["bytes"], w["on_nll_ar"]),
            "windows_ar_on_minus_ar_off": bootstrap(w["on_nll_ar"], w["bytes"], w["off_nll_ar"]),
            "lines_bidir_minus_causal_on": bootstrap(ln["bidir_on"], ln["bytes"], ln["causal_on"]),
            "lines_joint_bidir_minus_joint_causal": bootstrap(ln["joint_bidir"], ln["bytes"], ln["joint_causal"]),
        }
    savez_atomic(out / "reference_windows.npz", offsets=offsets, bytes=wbytes, control_nll_ar=ref["control"]["nll_ar"],
             joint_nll_ar=ref["joint"]["nll_ar"], joint_nll_cf_valid=ref["joint"]["nll_cf_valid"],
             joint_lines_causal=joint_lines["causal"], joint_lines_bidir=joint_lines["bidir"],
             lines_bytes=joint_lines["bytes"])
    summary["lines"]["items"] = [{k: it[k] for k in ("play", "line_index")} for it in items]
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2, default=float) + "\n").encode())
    print(json.dumps({k: {m: round(v["estimate"], 4) for m, v in c["bpb"].items()}
                      for k, c in summary["cells"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
