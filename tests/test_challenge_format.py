"""The shared format module: shards, the training stream, METHOD.md §2 byte tables, bits per byte."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sentencepiece as spm

from meadow_golf.data.challenge_format import (
    HEADER_BYTES,
    MAGIC,
    ShardError,
    TokenStream,
    bits_per_byte,
    byte_tables_from_sentencepiece,
    list_shards,
    load_byte_tables,
    load_tokens,
    read_shard,
    read_shard_header,
    shard_bytes,
    shard_name,
    write_shard,
)

# ----------------------------------------------------------------------------- shards


def test_shard_round_trip(tmp_path):
    tokens = np.array([1, 0, 65535, 7, 1024, 3], dtype=np.int64)
    path = tmp_path / shard_name("train", 0)
    write_shard(path, tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * tokens.size
    assert read_shard_header(path) == tokens.size
    np.testing.assert_array_equal(read_shard(path), tokens)
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == MAGIC and header[1] == 1 and header[2] == tokens.size and not header[3:].any()


def test_empty_shard_round_trip(tmp_path):
    path = tmp_path / shard_name("val", 3)
    write_shard(path, np.zeros(0, dtype=np.int64))
    assert path.name == "fineweb_val_000003.bin"
    assert read_shard_header(path) == 0 and read_shard(path).size == 0


def _corrupt(tmp_path, name: str, edit) -> str:
    raw = bytearray(shard_bytes(np.arange(10)))
    raw = edit(raw)
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    return path


def _set_int(raw: bytearray, index: int, value: int) -> bytearray:
    raw[4 * index : 4 * index + 4] = np.int32(value).tobytes()
    return raw


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda raw: _set_int(raw, 0, 12345), "bad magic"),
        (lambda raw: _set_int(raw, 1, 2), "unsupported version"),
        (lambda raw: raw[:-2], "does not match header"),  # truncated data
        (lambda raw: raw + b"\0\0", "does not match header"),  # trailing bytes
        (lambda raw: _set_int(raw, 2, 11), "does not match header"),  # header count too large
        (lambda raw: raw[:100], "truncated header"),
    ],
    ids=["magic", "version", "truncated", "trailing", "count", "header"],
)
def test_corrupt_shards_raise_shard_error_naming_the_file(tmp_path, edit, message):
    path = _corrupt(tmp_path, "fineweb_train_000000.bin", edit)
    with pytest.raises(ShardError, match=message) as info:
        read_shard_header(path)
    assert str(path) in str(info.value)


def test_missing_shard_file(tmp_path):
    path = tmp_path / "fineweb_val_000000.bin"
    with pytest.raises(ShardError, match="cannot read shard") as info:
        read_shard(path)
    assert str(path) in str(info.value)


def test_missing_folder_and_no_matching_shards(tmp_path):
    with pytest.raises(ShardError, match="does not exist") as info:
        list_shards(tmp_path / "nowhere", "train")
    assert "nowhere" in str(info.value)
    write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(3))
    (tmp_path / "fineweb_train_0.bin").write_bytes(b"")  # not a six-digit name: ignored
    with pytest.raises(ShardError, match=r"no shards matching fineweb_train_\*\.bin") as info:
        list_shards(tmp_path, "train")
    assert str(tmp_path) in str(info.value)


# ----------------------------------------------------------------------------- stream


@pytest.fixture
def two_shards(tmp_path):
    first, second = np.arange(100, 110), np.arange(200, 207)
    write_shard(tmp_path / shard_name("train", 1), second)  # written out of order on purpose
    write_shard(tmp_path / shard_name("train", 0), first)
    return tmp_path, np.concatenate([first, second])


def test_stream_reads_in_sorted_order_and_wraps(two_shards):
    folder, all_tokens = two_shards
    stream = TokenStream(folder)
    got = np.concatenate([stream.take(6), stream.take(9), stream.take(12)])  # 27 = 17 + 10
    expected = np.concatenate([all_tokens, all_tokens[:10]])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(load_tokens(folder, "train"), all_tokens)
    np.testing.assert_array_equal(load_tokens(folder, "train", limit=12), all_tokens[:12])


def test_stream_state_resume_gives_the_same_tokens(two_shards):
    folder, _ = two_shards
    stream = TokenStream(folder)
    stream.take(13)  # inside the second shard
    saved = stream.state()
    continued = stream.take(20)  # crosses the wrap-around
    resumed = TokenStream(folder)
    resumed.load_state(saved)
    np.testing.assert_array_equal(resumed.take(20), continued)
    with pytest.raises(ShardError):
        resumed.load_state({"shard": 5, "pos": 0})


def test_two_ranks_together_equal_one_process_batch(two_shards):
    folder, _ = two_shards
    batch, seq = 2, 3
    single = TokenStream(folder)
    ranks = [TokenStream(folder), TokenStream(folder)]
    for _ in range(4):  # several steps, so the wrap-around is crossed as well
        x, y = single.next_batch(2 * batch, seq)
        parts = [stream.next_batch(batch, seq, rank=r, world_size=2) for r, stream in enumerate(ranks)]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
        np.testing.assert_array_equal(x.reshape(-1)[1:], y.reshape(-1)[:-1])


# ----------------------------------------------------------------------------- byte tables


@pytest.fixture(scope="module")
def tiny_sp(tiny_sp_model):
    return spm.SentencePieceProcessor(model_file=str(tiny_sp_model))


@pytest.fixture(scope="module")
def tiny_tables(tiny_sp_model):
    return load_byte_tables(tiny_sp_model)


def test_leading_space_counts_only_after_an_ordinary_token(tiny_sp, tiny_tables):
    the = tiny_sp.piece_to_id("\u2581the")
    ordinary = tiny_sp.piece_to_id("mat")  # a word piece without a leading space
    assert the != tiny_sp.unk_id() and ordinary != tiny_sp.unk_id()
    assert tiny_tables.has_leading_space[the] and tiny_tables.base_bytes[the] == 3
    np.testing.assert_array_equal(tiny_tables.token_bytes(np.array([1, ordinary]), np.array([the, the])), [3, 4])


def test_byte_fallback_control_and_multibyte_pieces(tiny_sp, tiny_tables):
    euro = tiny_sp.encode("€")  # "€" never occurs in the training text
    assert len(euro) == 3 and all(tiny_sp.is_byte(i) for i in euro)
    assert tiny_tables.stream_bytes(np.array([1, *euro])).tolist() == [1, 1, 1]
    for control in (0, 1, 2, 3):  # pad, bos, eos, unk
        assert tiny_tables.is_boundary[control] and tiny_tables.base_bytes[control] == 0
    e_acute = tiny_sp.piece_to_id("é")
    cafe = tiny_sp.piece_to_id("\u2581café")
    assert tiny_tables.base_bytes[e_acute] == 2 and not tiny_tables.has_leading_space[e_acute]
    assert tiny_tables.base_bytes[cafe] == 5 and tiny_tables.has_leading_space[cafe]


def test_plain_text_bytes_equal_its_utf8_length(tiny_sp, tiny_tables):
    text = "the cat sat on the café mat, 42 dogs ran to the sun €"
    stream = np.array([1, *tiny_sp.encode(text)])
    assert int(tiny_tables.stream_bytes(stream).sum()) == len(text.encode("utf-8"))
    tables = byte_tables_from_sentencepiece(tiny_sp)
    assert tables.vocab_size == tiny_sp.get_piece_size() == 320


def test_token_ids_outside_the_vocabulary_are_refused(tiny_tables):
    with pytest.raises(ValueError, match="outside the tokenizer's vocabulary"):
        tiny_tables.stream_bytes(np.array([1, 320]))


def test_load_byte_tables_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_byte_tables(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        load_byte_tables(bad)


def test_bits_per_byte_hand_case():
    # 6 tokens with NLL ln(4) each (2 bits) spread over 4 bytes: 12 bits / 4 bytes = 3 bits per byte.
    assert bits_per_byte(6 * math.log(4.0), 4) == pytest.approx(3.0, rel=1e-15)
    assert bits_per_byte(math.log(2.0) * 10, 10) == pytest.approx(1.0, rel=1e-15)
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)
