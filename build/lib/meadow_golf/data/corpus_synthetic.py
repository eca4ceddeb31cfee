"""A synthetic English-like corpus whose entropy rate is known exactly.

The source: a vocabulary of pseudo-English words built from syllables (lowercase ASCII, fixed by
the seed) and a first-order Markov chain over them. Each word has 2-4 likely successors with
geometrically skewed probabilities, mixed with a small uniform leak to every word so that the
chain is irreducible and aperiodic. A document is a FIXED number of words (its length carries no
information), separated by single spaces, the first word drawn from the stationary distribution.

Exact entropy (bits), per document of n words, with pi the stationary distribution and P the
transition matrix:  H = H(pi) + (n-1) * sum_i pi_i H(P_i,.), because every position is
distributed as pi. Its expected size in bytes is n * E_pi[len(w)] + (n-1) spaces, and the
long-run rate over many documents is `entropy_bits_per_byte = H / expected bytes`.

Those are the METHOD.md §2 bytes of the validation targets: the text is lowercase ASCII with single
spaces, so nmt_nfkc leaves it unchanged, and with add_dummy_prefix=False the first word after
BOS has no leading "▁" (no space byte) while every later word carries its space. Preparation
verifies this equality (ByteTables count == UTF-8 length, and decode(encode(doc)) == doc) for
both splits and fails loudly otherwise.

Why it is useful: neighbouring words are strongly coupled (the per-word conditional entropy is a
fraction of the marginal H(pi)), so a "decoder" that peeks at not-yet-decoded neighbours scores
visibly below `entropy_bits_per_byte`, which no valid code can do on average.

Determinism: the source's structure comes from numpy Generator seeded [seed, 0], the training
documents from [seed, 1] and the validation documents from [seed, 2], so the validation sample
does not depend on the number of training documents.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from meadow_golf.data.challenge_format import atomic_write_bytes, byte_tables_from_sentencepiece
from meadow_golf.data.prepared_folder import PrepareError, write_split
from meadow_golf.data.tokenizer_train import encode_documents, load_processor, split_documents, train_sentencepiece

WORD_COUNT = 400
WORDS_PER_DOC = 64
LEAK = 0.05  # probability of jumping to a uniformly chosen word
SUCCESSOR_COUNTS = (2, 3, 4)
SKEW_RANGE = (0.25, 0.6)  # successor j has weight skew**j
ZIPF_OFFSET = 5.0  # popularity of the r-th shortest word ~ 1 / (r + offset)
DEFAULT_TRAIN_DOCS = 10_000  # about 3.2 MB of text (seed 0)
DEFAULT_VAL_DOCS = 1_000  # about 0.32 MB
STATIONARY_TOLERANCE = 1e-15
SOURCE_FILE = "synthetic_source.npz"

ONSETS = (
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z",
    "bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sh", "sl", "sp", "st",
    "th", "tr", "wh",
)  # fmt: skip
NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ee", "oo", "ou", "oa")
CODAS = ("", "", "", "", "n", "r", "s", "t", "l", "m", "d", "ck", "ng", "nd", "st", "rt", "ll")
SYLLABLE_COUNTS = (1, 2, 3)
SYLLABLE_WEIGHTS = (0.35, 0.45, 0.20)


@dataclass(frozen=True)
class MarkovWordSource:
    """The generating process; everything else (matrix, entropy, sampling) derives from it."""

    words: tuple[str, ...]
    successors: np.ndarray  # (W, 4) int64 successor word ids, padded by repeating the last one
    successor_probs: np.ndarray  # (W, 4) float64, rows sum to 1, zero in the padding
    leak: float
    words_per_doc: int

    @property
    def word_count(self) -> int:
        return len(self.words)

    @property
    def word_bytes(self) -> np.ndarray:
        return np.array([len(w.encode("utf-8")) for w in self.words], dtype=np.int64)

    @cached_property
    def transition(self) -> np.ndarray:
        """P[i, j] = (1 - leak) * q_i(j) + leak / W, in float64."""
        w = self.word_count
        matrix = np.full((w, w), self.leak / w, dtype=np.float64)
        for slot in range(self.successors.shape[1]):
            np.add.at(matrix, (np.arange(w), self.successors[:, slot]), (1 - self.leak) * self.successor_probs[:, slot])
        return matrix

    @cached_property
    def stationary(self) -> np.ndarray:
        """pi with pi P = pi, by power iteration from uniform until no entry moves by 1e-15.

        The uniform leak makes every entry of P positive, so the iteration contracts at least by
        a factor (1 - leak) per step (in practice much faster: a few hundred steps at most).
        """
        matrix = self.transition
        pi = np.full(self.word_count, 1.0 / self.word_count)
        for _ in range(100_000):
            nxt = pi @ matrix
            nxt /= nxt.sum()
            if np.max(np.abs(nxt - pi)) < STATIONARY_TOLERANCE:
                return nxt
            pi = nxt
        raise RuntimeError("stationary distribution did not converge")

    def entropy(self) -> dict:
        """The exact entropy of the source and its components (bits, bytes)."""
        matrix, pi = self.transition, self.stationary
        n = self.words_per_doc
        first_word_bits = float(-(pi * np.log2(pi)).sum())
        row_entropy = -(matrix * np.log2(matrix)).sum(axis=1)
        per_word_bits = float(pi @ row_entropy)
        mean_word_bytes = float(pi @ self.word_bytes)
        doc_bits = first_word_bits + (n - 1) * per_word_bits
        doc_bytes = n * mean_word_bytes + (n - 1)
        return {
            "entropy_bits_per_byte": doc_bits / doc_bytes,
            "words_per_document": n,
            "per_word_entropy_rate_bits": per_word_bits,
            "first_word_entropy_bits": first_word_bits,
            "mean_bytes_per_word": mean_word_bytes,
            "entropy_bits_per_document": doc_bits,
            "expected_bytes_per_document": doc_bytes,
        }

    def sample_documents(self, rng: np.random.Generator, n_docs: int) -> np.ndarray:
        """(n_docs, words_per_doc) word ids, all documents sampled in parallel, step by step."""
        w, n = self.word_count, self.words_per_doc
        cumulative_pi = np.cumsum(self.stationary)
        cumulative_pi[-1] = 1.0
        cumulative_succ = np.cumsum(self.successor_probs, axis=1)
        cumulative_succ[:, -1] = 1.0  # exact, so a uniform draw in [0, 1) always lands in a slot
        ids = np.empty((n_docs, n), dtype=np.int64)
        ids[:, 0] = np.searchsorted(cumulative_pi, rng.random(n_docs), side="right")
        for k in range(1, n):
            current = ids[:, k - 1]
            # The mixture: with probability `leak` a uniform word, otherwise one of the successors.
            leaked = rng.random(n_docs) < self.leak
            uniform = rng.integers(0, w, n_docs)
            slot = (cumulative_succ[current] <= rng.random(n_docs)[:, None]).sum(axis=1)
            ids[:, k] = np.where(leaked, uniform, self.successors[current, slot])
        return ids

    def log2_probability(self, ids: np.ndarray) -> np.ndarray:
        """log2 p(document) under the source, for each row of word ids."""
        ids = np.asarray(ids)
        log_pi = np.log2(self.stationary)
        log_p = np.log2(self.transition)
        return log_pi[ids[:, 0]] + log_p[ids[:, :-1], ids[:, 1:]].sum(axis=1)

    def render(self, ids: np.ndarray) -> list[str]:
        """Documents as text: words joined by single spaces."""
        words = self.words
        return [" ".join(words[i] for i in row) for row in np.asarray(ids).tolist()]

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            words=np.array(self.words),
            successors=self.successors,
            successor_probs=self.successor_probs,
            leak=np.float64(self.leak),
            words_per_doc=np.int64(self.words_per_doc),
            transition=self.transition,
            stationary=self.stationary,
        )
        atomic_write_bytes(path, buf.getvalue())


def load_source(path: str | Path) -> MarkovWordSource:
    """The source saved next to a prepared synthetic corpus (synthetic_source.npz)."""
    with np.load(path) as data:
        return MarkovWordSource(
            words=tuple(str(w) for w in data["words"]),
            successors=data["successors"].astype(np.int64),
            successor_probs=data["successor_probs"].astype(np.float64),
            leak=float(data["leak"]),
            words_per_doc=int(data["words_per_doc"]),
        )


def make_words(rng: np.random.Generator, count: int) -> list[str]:
    """`count` distinct pseudo-English words, shortest first (ties in order of invention)."""
    seen: dict[str, None] = {}
    while len(seen) < count:
        syllables = rng.choice(SYLLABLE_COUNTS, p=SYLLABLE_WEIGHTS)
        parts = []
        for s in range(syllables):
            # A word may open on a vowel; later syllables always have an onset.
            if s > 0 or rng.random() < 0.8:
                parts.append(ONSETS[rng.integers(len(ONSETS))])
            parts.append(NUCLEI[rng.integers(len(NUCLEI))])
            parts.append(CODAS[rng.integers(len(CODAS))])
        seen.setdefault("".join(parts), None)
    return sorted(seen, key=len)  # stable: equal lengths keep their order


def build_source(
    seed: int, word_count: int = WORD_COUNT, words_per_doc: int = WORDS_PER_DOC, leak: float = LEAK
) -> MarkovWordSource:
    """The source defined by `seed` (same seed, same source, on every machine)."""
    rng = np.random.default_rng([seed, 0])
    words = make_words(rng, word_count)
    # Short words are popular as successors, as in English (a Zipf-like popularity by length rank).
    popularity = 1.0 / (np.arange(word_count) + ZIPF_OFFSET)
    popularity /= popularity.sum()
    width = max(SUCCESSOR_COUNTS)
    successors = np.empty((word_count, width), dtype=np.int64)
    probs = np.zeros((word_count, width), dtype=np.float64)
    for i in range(word_count):
        k = int(rng.choice(SUCCESSOR_COUNTS))
        chosen = rng.choice(word_count, size=k, replace=False, p=popularity)
        weights = rng.uniform(*SKEW_RANGE) ** np.arange(k)
        successors[i, :k] = chosen
        successors[i, k:] = chosen[-1]
        probs[i, :k] = weights / weights.sum()
    return MarkovWordSource(tuple(words), successors, probs, leak, words_per_doc)


def check_bytes_equal_text(sp, stream: np.ndarray, texts: list[str], split: str) -> int:
    """Verify METHOD.md §2 bytes of the split == UTF-8 bytes of its text, and exact round trip."""
    tables = byte_tables_from_sentencepiece(sp)
    counted = int(tables.stream_bytes(stream.astype(np.int64)).sum())
    text_bytes = sum(len(t.encode("utf-8")) for t in texts)
    if counted != text_bytes:
        raise PrepareError(
            f"synthetic {split}: METHOD.md §2 byte count {counted} != text bytes {text_bytes}; "
            "the exact entropy would not be in the metric's bytes"
        )
    decoded = sp.decode([doc.tolist() for doc in split_documents(stream)])
    if decoded != texts:
        raise PrepareError(f"synthetic {split}: the tokenizer does not reproduce the text exactly")
    return counted


def tokenizer_file_name(vocab_size: int) -> str:
    return f"synthetic_{vocab_size}_bpe.model"


def prepare_synthetic(folder: Path, vocab_size: int, seed: int, train_docs: int, val_docs: int) -> dict:
    """Write the tokenizer, shards and source file into `folder`; return the corpus part of meta."""
    source = build_source(seed)
    train_ids = source.sample_documents(np.random.default_rng([seed, 1]), train_docs)
    val_ids = source.sample_documents(np.random.default_rng([seed, 2]), val_docs)
    train_text, val_text = source.render(train_ids), source.render(val_ids)

    model = train_sentencepiece(train_text, vocab_size)  # one line per document
    tokenizer = tokenizer_file_name(vocab_size)
    atomic_write_bytes(folder / tokenizer, model)
    sp = load_processor(model)
    train_stream = encode_documents(sp, train_text)
    val_stream = encode_documents(sp, val_text)
    check_bytes_equal_text(sp, train_stream, train_text, "train")
    val_bytes = check_bytes_equal_text(sp, val_stream, val_text, "val")
    write_split(folder, "train", train_stream)
    write_split(folder, "val", val_stream)
    source.save(folder / SOURCE_FILE)

    entropy = source.entropy()
    val_bits = float(-source.log2_probability(val_ids).sum())
    return {
        "tokenizer": tokenizer,
        "source": {
            # The text prepared folders' meta.json already hold (an output, unchanged by the move of
            # this module to scripts/meadow_golf/).
            "generator": "first-order Markov chain over pseudo-English words (scripts/corpus_synthetic.py)",
            "seed": seed,
            "words": source.word_count,
            "words_per_document": source.words_per_doc,
            "successors_per_word": list(SUCCESSOR_COUNTS),
            "successor_skew_range": list(SKEW_RANGE),
            "leak": source.leak,
            "numpy": np.__version__,
            "parameters_file": SOURCE_FILE,
        },
        "splits": {
            "train": f"{train_docs} documents sampled with numpy.random.default_rng([seed, 1])",
            "val": f"{val_docs} documents sampled with numpy.random.default_rng([seed, 2])",
            "tokenizer_trained_on": "train documents only, one line per document",
        },
        "train_documents": train_docs,
        "val_documents": val_docs,
        "entropy_bits_per_byte": entropy["entropy_bits_per_byte"],
        "entropy": {
            "definition": "long-run rate E[H(document)] / E[bytes(document)], exact from the chain; "
            "bytes are METHOD.md §2 bytes (= UTF-8 length of the text)",
            **entropy,
        },
        "val_entropy_bits_exact_sum": val_bits,
        "val_entropy_bits_per_byte_sample": val_bits / val_bytes,
    }
