"""Train the METHOD.md §1 SentencePiece tokenizer and encode documents into a BOS-delimited stream.

Every prepared corpus that builds its own tokenizer (shakespeare, synthetic) goes through
`train_sentencepiece`, so all of them share the challenge's settings: BPE with byte fallback,
split digits, nmt_nfkc normalization, no dummy prefix, character coverage 0.999 and the ids
pad/bos/eos/unk = 0/1/2/3.

Reproducibility: the trainer sees every sentence (input_sentence_size=0), in the given order
(no shuffling), on one thread. The learned pieces do not depend on the thread count, but the
thread count is stored inside the model file, so one fixed value keeps the file's bytes identical
from run to run and machine to machine.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np

from meadow_golf.data.challenge_format import BOS_ID

# The METHOD.md §1 tokenizer settings (shared by every tokenizer this project trains).
SPEC_TRAINER_SETTINGS = dict(
    model_type="bpe",
    byte_fallback=True,
    split_digits=True,
    normalization_rule_name="nmt_nfkc",
    add_dummy_prefix=False,
    character_coverage=0.999,
    pad_id=0,
    bos_id=BOS_ID,
    eos_id=2,
    unk_id=3,
)

# Settings that make training deterministic (see the module docstring).
DETERMINISTIC_SETTINGS = dict(
    input_sentence_size=0,
    shuffle_input_sentence=False,
    num_threads=1,
)

# SentencePiece skips training sentences longer than this many bytes; callers feed lines,
# which stay far below it, and `training_lines` splits anything longer.
MAX_SENTENCE_BYTES = 4192

MAX_VOCAB = 1 << 16  # token ids are stored as uint16


class TokenizerError(RuntimeError):
    """SentencePiece refused to train (e.g. a vocabulary too large for the text)."""


def training_lines(texts: Iterable[str]) -> list[str]:
    """Split texts into the non-empty lines SentencePiece trains on, each under its length cap."""
    lines = []
    for text in texts:
        for line in text.split("\n"):
            line = line.strip()
            while len(line.encode("utf-8")) > MAX_SENTENCE_BYTES:
                # Rare; cut at a space near the cap so that words stay whole where possible.
                cut = line.rfind(" ", 0, MAX_SENTENCE_BYTES // 4)
                cut = cut if cut > 0 else MAX_SENTENCE_BYTES // 4
                lines.append(line[:cut])
                line = line[cut:].strip()
            if line:
                lines.append(line)
    return lines


def train_sentencepiece(lines: Iterable[str], vocab_size: int) -> bytes:
    """Train the METHOD.md §1 BPE tokenizer on the given lines; return the serialized model."""
    import sentencepiece as spm

    if not 260 < vocab_size <= MAX_VOCAB:
        # 4 special ids + 256 byte-fallback pieces come first; ids must fit in uint16.
        raise TokenizerError(f"vocabulary size {vocab_size} must be in 261..{MAX_VOCAB}")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(list(lines)),
            model_writer=model,
            vocab_size=vocab_size,
            minloglevel=2,  # keep the trainer's progress log off the console
            **SPEC_TRAINER_SETTINGS,
            **DETERMINISTIC_SETTINGS,
        )
    except RuntimeError as e:
        # Keep SentencePiece's own explanation, without its source location and check expression.
        lines = str(e).strip().splitlines() or [type(e).__name__]
        reason = lines[-1].rsplit("] ", 1)[-1]
        raise TokenizerError(f"SentencePiece could not train a {vocab_size}-piece tokenizer: {reason}") from None
    return model.getvalue()


def load_processor(model: bytes):
    """A SentencePieceProcessor from serialized model bytes."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=model)


def encode_documents(sp, documents: list[str]) -> np.ndarray:
    """The METHOD.md §1 stream of the documents: for each one, BOS then its tokens (no EOS), as uint16."""
    encoded = sp.encode(list(documents), out_type=int)
    total = sum(len(ids) + 1 for ids in encoded)
    stream = np.empty(total, dtype=np.uint16)
    pos = 0
    for ids in encoded:
        stream[pos] = BOS_ID
        stream[pos + 1 : pos + 1 + len(ids)] = ids
        pos += len(ids) + 1
    return stream


def split_documents(stream: np.ndarray) -> list[np.ndarray]:
    """Cut a BOS-delimited stream back into its documents' token arrays (BOS removed)."""
    stream = np.asarray(stream)
    starts = np.flatnonzero(stream == BOS_ID)
    ends = np.append(starts[1:], stream.size)
    return [stream[s + 1 : e] for s, e in zip(starts, ends)]
