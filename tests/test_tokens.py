"""Tokenizers (lossless for every model type) and token shards (splits, dtype, checks, exact sampling)."""

import io
import random
import re

import numpy as np
import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

import lmcore.data.text as text_module
from helpers import documents, fake_document, make_shards, train_tokenizer
from lmcore.data.splits import SPLITS
from lmcore.io import write_jsonl
from lmcore.tokens import shards as shards_lib
from lmcore.tokens import tokenizer as tokenizer_lib
from lmcore.tokens.shards import TokenDataset, shard_part, write_manifest
from lmcore.tokens.tokenizer import dtype_for

HARD_STRINGS = [
    "  two leading spaces",
    "tabs\tand\n\n\nnewlines\n",
    "trailing  ",
    "\n",
    "emoji 😀, CJK 漢字, e\u0301 (combining)",
    "<|endoftext|>",
    "a\r\nb",
    "\x00\x01 control",
    "",
    "zero\u200bwidth",
    "RTL مرحبا",
    "\u2581 lower one eighth block",
    "\ue000 private\ue000\ue000s use",
    "\ue000s\u2581",
]


@pytest.fixture(scope="module", params=["bpe", "unigram", "char"])
def tok(request, tmp_path_factory):
    return train_tokenizer(
        tmp_path_factory.mktemp(request.param) / "spm.model", request.param, user_defined_symbols=["<|endoftext|>"]
    )


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_decode_encode_is_identity(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_decode_encode_is_identity_on_random_text(tok):
    rng = random.Random(1)
    alphabet = "abc XYZ\n\t  .,;'\"é漢😀\u0301-_<|>\r\x00\u00a0\u2581\ue000s"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert tok.decode(tok.encode(text)) == text


def test_user_defined_symbol_is_one_piece(tok):
    assert len(tok.encode("<|endoftext|>")) == 1


def test_encode_arrays_gives_the_ids_of_encode(tok, monkeypatch):
    """Shards are written with encode_arrays: on a BPE model it encodes word by word, looking up
    repeated words, and must give exactly the ids that encoding the whole text gives."""
    rng = random.Random(2)
    alphabet = [
        "the",
        "a",
        "cat",
        " ",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        ".",
        ",",
        "7",
        "42",
        "é",
        "漢",
        "😀",
        "\u2581",
        "\ue000s",
        "<|endoftext|>",
    ]
    texts = HARD_STRINGS + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(300)]
    proto = sentencepiece_model_pb2.ModelProto.FromString(open(tok.path, "rb").read())
    assert (tok.words is not None) == (proto.trainer_spec.model_type == proto.trainer_spec.BPE)
    monkeypatch.setattr(tokenizer_lib, "CACHED_WORDS", 50)  # the cache is emptied, then filled again
    for batch in (texts[:100], texts, texts[::-1]):
        arrays = tok.encode_arrays(batch)
        assert all(a.dtype == np.uint16 for a in arrays)
        assert [a.tolist() for a in arrays] == [tok.encode(t) for t in batch]
    monkeypatch.setattr(text_module, "PIECE_CHARS", 16)  # every text longer than that is encoded line by line
    long = ["".join(rng.choice(alphabet) for _ in range(2000)) for _ in range(5)]
    assert tok.lines_alone and [a.tolist() for a in tok.encode_arrays(texts[:50] + long)] == [
        tok.encode(t) for t in texts[:50] + long
    ]


@pytest.mark.parametrize(
    "model_type, symbols, word_by_word",
    [
        ("bpe", ["<|endoftext|>"], True),
        ("bpe", ["\n\n"], False),  # a piece holding a newline
        ("unigram", [], False),  # the best segmentation is found over the whole text
    ],
)
def test_word_by_word_encoding_only_where_no_piece_crosses_a_word(
    tmp_path, model_type, symbols, word_by_word, monkeypatch
):
    tok = train_tokenizer(tmp_path / "spm.model", model_type, user_defined_symbols=symbols)
    assert (tok.words is not None) == word_by_word
    assert tok.lines_alone == (
        "\n\n" not in symbols
    )  # a long text is cut after newlines only where no piece crosses one
    monkeypatch.setattr(text_module, "PIECE_CHARS", 4)
    texts = ["x\n\n\ny", "\n\nz \n\n", "a\n\n\nb c\n\nd e f\n\n\n\ng"] + HARD_STRINGS
    assert [a.tolist() for a in tok.encode_arrays(texts)] == [tok.encode(t) for t in texts]


def test_a_model_whose_pieces_span_words_encodes_whole_texts(tmp_path):
    """A model file trained elsewhere, without SentencePiece's split at words, has pieces such as
    "of▁the": cutting a text into words would change its ids."""
    phrases = ["of the king", "in the end", "of the people"] * 200
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(phrases),
        model_prefix=str(tmp_path / "m"),
        model_type="bpe",
        vocab_size=60,
        split_by_whitespace=False,
        add_dummy_prefix=False,
        minloglevel=2,
    )
    tok = tokenizer_lib.Tokenizer(tmp_path / "m.model")
    assert any("e\u2581" in tok.sp.id_to_piece(i) for i in range(tok.vocab_size)) and tok.words is None
    texts = ["of the king of the people", "in the end"]
    assert [a.tolist() for a in tok.encode_arrays(texts)] == [tok.encode(t) for t in texts]


def test_a_vocabulary_too_small_for_the_corpus_says_how_large_it_must_be(tmp_path):
    with pytest.raises(
        ValueError, match=r"vocab_size 280 is too small for this corpus: .* take (\d+); use a vocab_size of at least \1"
    ) as err:
        train_tokenizer(tmp_path / "small.model", "bpe", vocab_size=280)
    need = int(re.search(r"at least (\d+)", str(err.value))[1])
    assert train_tokenizer(tmp_path / "enough.model", "bpe", vocab_size=need).vocab_size == need  # the advice works


def test_measure_reports_no_round_trip_failure(tok):
    stats = tokenizer_lib.measure(tok, documents(5, seed=3))
    assert stats["round_trip_failures"] == 0
    assert stats["chars_per_token"] >= 1.0 and 0 < stats["vocab_used_share"] <= 1
    assert len(stats["top_pieces"]) == 20


def test_shards_hold_every_document_once_joined_by_end_of_text(tmp_path, bpe):
    docs = documents(30)
    stats, out = make_shards(tmp_path, bpe, docs)
    assert sum(stats[s]["documents"] for s in SPLITS) == 30
    texts = []
    for s in SPLITS:
        tokens = np.load(out[s])
        assert tokens.dtype == np.uint16 and len(tokens) == stats[s]["tokens"]
        pieces = np.split(tokens, np.flatnonzero(tokens == bpe.eot_id) + 1)
        texts += [bpe.decode(p[:-1]) for p in pieces if len(p)]
    assert sorted(texts) == sorted(d["text"] for d in docs)
    assert dtype_for(70_000) == np.uint32


def test_dataset_checks_fingerprint_and_token_range(tmp_path, bpe):
    _, out = make_shards(tmp_path, bpe, documents(30))
    with pytest.raises(ValueError, match="rebuild the shards"):
        TokenDataset(tmp_path / "manifest.json", "train", fingerprint="f" * 64)
    tokens = np.load(out["test"])
    np.save(out["test"], np.r_[tokens[:-1], 999].astype(np.uint16))
    with pytest.raises(ValueError, match=r"test\.npy: token id 999 is out of range for vocabulary size 400"):
        list(TokenDataset(tmp_path / "manifest.json", "test", bpe.fingerprint).windows(8))  # checked when opened
    np.save(out["test"], tokens[:-5])
    with pytest.raises(
        ValueError, match=rf"test\.npy: {len(tokens) - 5:,} tokens, but the manifest says {len(tokens):,}"
    ):
        list(TokenDataset(tmp_path / "manifest.json", "test", bpe.fingerprint).windows(8))


def many_small_shards(tmp_path, tok, parts=12):
    """`parts` parts of a few documents each, every shard shorter than a 64-token context."""
    rng = random.Random(0)
    docs = [{"id": str(i), "text": fake_document(rng, 1)[:45]} for i in range(parts * 2)]
    entries = []
    for k in range(parts):
        write_jsonl(tmp_path / f"p{k}.jsonl", [{**d, "id": f"d{k}-{i}"} for i, d in enumerate(docs[2 * k : 2 * k + 2])])
        out = {s: str(tmp_path / f"p{k}-{s}.npy") for s in SPLITS}
        stats = shard_part(tmp_path / f"p{k}.jsonl", tok, {"validation": 0.0001, "test": 0.0001}, out)
        entries.append({"name": f"p{k}", "source": "corpus", "stats": stats, "shards": out})
    write_manifest(tmp_path / "manifest.json", tok, entries)
    return [np.load(e["shards"]["train"]) for e in entries]


def test_windows_cross_shard_boundaries_so_any_number_of_parts_serves_any_context(tmp_path, bpe, monkeypatch):
    monkeypatch.setattr(shards_lib, "OPEN_SHARDS", 3)
    arrays = many_small_shards(tmp_path, bpe)
    assert max(len(a) for a in arrays) < 65 and sum(len(a) for a in arrays) > 5 * 65
    data = TokenDataset(tmp_path / "manifest.json", "train", bpe.fingerprint)
    whole = np.concatenate(arrays)
    streams, starts = data.draw(np.random.default_rng(1), 64, 64)
    x, y = data.sample_batch(np.random.default_rng(1), 64, 64)
    assert all(
        (x[i] == whole[p : p + 64]).all() and (y[i] == whole[p + 1 : p + 65]).all() for i, p in enumerate(starts)
    )
    assert len(data._open) <= 3  # lazily opened, the least recently used closed
    assert np.array_equal(np.concatenate([y for _, _, y in data.windows(64)]), whole[1:])


def test_a_rank_reads_only_its_slice_of_the_global_batch(tmp_path, bpe, monkeypatch):
    many_small_shards(tmp_path, bpe)
    data = TokenDataset(tmp_path / "manifest.json", "train", bpe.fingerprint)
    x, y = data.sample_batch(np.random.default_rng(3), 8, 32)
    reads = []
    read = shards_lib.Stream.read
    monkeypatch.setattr(shards_lib.Stream, "read", lambda self, *a: reads.append(a[1]) or read(self, *a))
    for r in range(4):
        xr, yr = data.sample_batch(np.random.default_rng(3), 8, 32, rows=slice(2 * r, 2 * r + 2))
        assert (xr == x[2 * r : 2 * r + 2]).all() and (yr == y[2 * r : 2 * r + 2]).all()
    assert len(reads) == 8  # two windows per rank, not eight


def test_random_windows_are_shifted_seeded_and_resumable(tmp_path, bpe):
    make_shards(tmp_path, bpe, documents(30))
    data = TokenDataset(tmp_path / "manifest.json", "train", bpe.fingerprint)
    rng = np.random.default_rng(5)
    x, y = data.sample_batch(rng, 4, 16)
    assert x.shape == y.shape == (4, 16) and (x[:, 1:] == y[:, :-1]).all()
    saved = rng.bit_generator.state
    after = data.sample_batch(rng, 4, 16)
    restored = np.random.default_rng(0)
    restored.bit_generator.state = saved
    assert all((a == b).all() for a, b in zip(after, data.sample_batch(restored, 4, 16)))
    windows = list(data.windows(16))
    assert sum(len(y) for _, _, y in windows) == data.num_tokens - len(data.by_source)  # each source's first: no x


def test_shards_can_be_moved_with_their_manifest(tmp_path, bpe):
    (tmp_path / "a").mkdir()
    make_shards(tmp_path / "a", bpe, documents(30))
    (tmp_path / "a").rename(tmp_path / "b")
    data = TokenDataset(tmp_path / "b" / "manifest.json", "train", bpe.fingerprint)
    assert data.num_tokens > 0 and all(p.startswith(str(tmp_path / "b")) for p in data.paths)


def test_a_vocabulary_larger_than_the_corpus_gives_is_said_on_the_console(tmp_path, monkeypatch, capsys):
    from lmcore.workflow import joblog

    console = io.StringIO()  # the job's stderr, which Snakemake shows
    monkeypatch.setitem(joblog.CONSOLE, "stream", console)
    monkeypatch.setitem(joblog.CONSOLE, "log", "logs/train_tokenizer/tok.log")
    cfg = {
        "model_type": "bpe",
        "vocab_size": 5000,
        "character_coverage": 1.0,
        "byte_fallback": True,
        "input_sentence_size": 0,
    }
    pieces = tokenizer_lib.train(documents(10), tmp_path / "spm.model", cfg, log=lambda line: None)
    assert pieces == tokenizer_lib.Tokenizer(tmp_path / "spm.model").vocab_size < 5000
    said = (
        f"vocabulary of {pieces:,} pieces, fewer than the vocab_size of 5,000 asked: the training text yields no "
        f"more (SentencePiece's hard_vocab_limit off); its models use {pieces:,}"
    )
    assert console.getvalue() == f"Warning in logs/train_tokenizer/tok.log: {said}\n"
    assert f"Warning: {said}" in capsys.readouterr().out  # and in the job's log


def test_a_tokenizer_with_nothing_to_train_on_says_so(tmp_path):
    from helpers import train_tokenizer

    with pytest.raises(ValueError, match="no text to train on: cleaning and dedup kept no document"):
        train_tokenizer(tmp_path / "spm.model", docs=[])
