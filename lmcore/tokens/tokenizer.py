"""SentencePiece tokenizers that are lossless: decode(encode(text)) == text.

Losslessness comes from identity normalisation, no dummy prefix, no whitespace
folding, byte fallback, the newline as a user-defined piece (SentencePiece
otherwise never sees one: it treats its input as lines), and an escape for the
character SentencePiece uses for spaces (U+2581). Documents are joined
with the end-of-text id (SentencePiece's eos).
"""

import io
import itertools
import os
import re

import numpy as np
import sentencepiece as spm

from lmcore.data.splits import documents_in_split
from lmcore.data.text import LINE_END, one_piece, pieces
from lmcore.io import atomic_open, copy_file, sha256_file, uniform
from lmcore.tokens.chat import CHAT_PIECES
from lmcore.workflow.joblog import warn

MAX_SENTENCE_BYTES = 8192
# SentencePiece writes spaces as U+2581, so a U+2581 in the text would decode as a space.
# It is escaped as ESCAPE + "s", and ESCAPE itself (a private-use character) as ESCAPE twice.
SPACE_SYMBOL, ESCAPE = "\u2581", "\ue000"
UNESCAPE = re.compile(ESCAPE + "([" + ESCAPE + "s])")
DEFAULT_SPECIAL_IDS = {"unk": 0, "bos": 1, "eos": 2, "pad": -1}
# BPE merges two pieces only when their concatenation is a piece, so at a point of the text that no
# piece crosses, the text encodes as the part before it and the part after it, each encoded alone.
# No piece of lmcore's BPE models crosses the start of a word (SentencePiece starts one at each run
# of spaces that follows a non-space) or a newline (a user-defined piece): a text is a sequence of
# WORDs, and encode_arrays encodes each distinct word once and looks up its repeats.
WORD = re.compile(r" *[^ \n]+| +|\n")
CACHED_WORDS = 200_000  # about 100 bytes each; the cache is emptied when it grows past this
TOP_PIECES = 20


def escape(text):
    if ESCAPE in text or SPACE_SYMBOL in text:
        return text.replace(ESCAPE, ESCAPE + ESCAPE).replace(SPACE_SYMBOL, ESCAPE + "s")
    return text


def unescape(text):
    if ESCAPE in text:
        return UNESCAPE.sub(lambda m: ESCAPE if m.group(1) == ESCAPE else SPACE_SYMBOL, text)
    return text


def training_sentences(documents):
    """Paragraphs with their newlines, cut at line ends to stay under SentencePiece's sentence limit."""
    for doc in documents:
        chunk = ""
        for line in escape(doc["text"]).splitlines(keepends=True):
            if chunk and (line == "\n" or len((chunk + line).encode()) > MAX_SENTENCE_BYTES):
                yield chunk + (line if line == "\n" else "")
                chunk = "" if line == "\n" else line
            else:
                chunk += line
        if chunk:
            yield chunk


def training_documents(paths, fractions, max_chars, seed=0):
    """The train-split documents, sampled to at most about `max_chars` characters, sorted by id.

    The sample and the order depend on the documents' ids only, never on how they were
    spread over parts, so 1 part and 8 parts train the same tokenizer. Two passes over
    the files keep memory at the sample's size.
    """
    total = sum(len(d["text"]) for d in documents_in_split(paths, "train", fractions))
    keep = min(1.0, max_chars / max(1, total))
    sample = [d for d in documents_in_split(paths, "train", fractions) if uniform(f"{seed}/{d['id']}") < keep]
    return sorted(sample, key=lambda d: d["id"])


def train(documents, model_path, cfg, num_threads=1, log=print):
    """Train a SentencePiece model on an iterable of documents and write it atomically."""
    model = io.BytesIO()
    spm.set_random_generator_seed(cfg.get("seed", 0))  # makes the paragraph sample repeatable
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=training_sentences(documents),
            model_writer=model,
            model_type=cfg["model_type"],
            vocab_size=cfg["vocab_size"],
            character_coverage=cfg["character_coverage"],
            byte_fallback=cfg["byte_fallback"],
            input_sentence_size=cfg["input_sentence_size"],
            shuffle_input_sentence=True,
            seed_sentencepiece_size=1000000,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            allow_whitespace_only_pieces=True,
            split_digits=True,
            user_defined_symbols=["\n"] + [s for s in cfg.get("user_defined_symbols", []) if s != "\n"],
            control_symbols=list(CHAT_PIECES),  # ids of their own that no text encodes to (lmcore.tokens.chat)
            max_sentence_length=MAX_SENTENCE_BYTES,
            **{f"{name}_id": i for name, i in cfg.get("special_ids", DEFAULT_SPECIAL_IDS).items()},
            num_threads=num_threads,
            hard_vocab_limit=False,
            minloglevel=1,
        )
    except RuntimeError as e:  # SentencePiece's own words, with the fix in the config's terms
        if "!sentences_.empty()" in str(e):
            raise ValueError(
                "no text to train on: cleaning and dedup kept no document in the train split (the clean stats, "
                "results/clean/<source>/part-<k>.stats.json, and the clean logs say what was dropped and why)"
            ) from None
        small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", str(e))
        if not small:
            raise
        raise ValueError(
            f"vocab_size {small[1]} is too small for this corpus: the characters that character_coverage "
            f"{cfg['character_coverage']} keeps, with the special, user-defined and byte pieces, take {small[2]}; "
            f"use a vocab_size of at least {small[2]} (more, for pieces to learn) or a lower character_coverage"
        ) from None
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
    if pieces < cfg["vocab_size"]:
        warn(
            f"vocabulary of {pieces:,} pieces, fewer than the vocab_size of {cfg['vocab_size']:,} asked: the "
            f"training text yields no more (SentencePiece's hard_vocab_limit off); its models use {pieces:,}"
        )
    else:
        log(f"vocabulary: {pieces:,} pieces")
    with atomic_open(model_path, "wb") as f:
        f.write(model.getvalue())
    return pieces


def use_model_file(path, model_path):
    """Copy a given SentencePiece model to `model_path` after checking it loads and has an end-of-text
    piece (documents are joined with it); returns its number of pieces."""
    try:
        sp = spm.SentencePieceProcessor(model_file=os.fspath(path))
    except (OSError, RuntimeError) as e:
        raise ValueError(f"tokenizer model_file {path}: not a SentencePiece model ({e})") from None
    if sp.eos_id() < 0:
        raise ValueError(f"tokenizer model_file {path}: has no end-of-text (eos) piece, which joins documents")
    copy_file(path, model_path)
    return sp.get_piece_size()


def dtype_for(vocab_size):
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def read_proto(model_path):
    """The SentencePiece ModelProto of a model file: its trainer settings and every piece with its score and type."""
    from sentencepiece import sentencepiece_model_pb2

    with open(model_path, "rb") as f:
        return sentencepiece_model_pb2.ModelProto.FromString(f.read())


def words_encode_alone(model_path):
    """Whether the model is BPE and no piece crosses a point where WORD splits a text: none holds
    a newline but the newline piece itself, and none has a space after a non-space."""
    proto = read_proto(model_path)
    crosses = re.compile(f"[^{SPACE_SYMBOL}]{SPACE_SYMBOL}|.\n|\n.", re.DOTALL)
    return proto.trainer_spec.model_type == proto.trainer_spec.BPE and not any(
        crosses.search(p.piece) for p in proto.pieces
    )


def lines_encode_alone(model_path):
    """Whether no piece crosses the end of a line (none holds a newline but the newline piece itself):
    then a text encodes as its lines do, each encoded alone, whatever the model type."""
    return not any(re.search(".\n|\n.", p.piece, re.DOTALL) for p in read_proto(model_path).pieces)


class Tokenizer:
    def __init__(self, model_path):
        self.path = os.fspath(model_path)
        self.sp = spm.SentencePieceProcessor(model_file=self.path)
        self.vocab_size = self.sp.get_piece_size()
        self.eot_id = self.sp.eos_id()
        self.dtype = dtype_for(self.vocab_size)
        self.fingerprint = sha256_file(self.path)
        self.words = (
            {} if words_encode_alone(self.path) else None
        )  # word -> its ids' bytes, or None: encode whole texts
        self.lines_alone = lines_encode_alone(self.path)

    def encode(self, text):
        return self.sp.encode(escape(text))

    def encode_arrays(self, texts, num_threads=1):
        """The ids of each text, as `encode` gives them, as an array of `self.dtype`. On a BPE model each
        distinct word is encoded once (see WORD). A long text is encoded a piece at a time, cut after
        newlines where no piece crosses them: its memory is then a small multiple of the text, not a
        Python object per word and per id."""
        long = [not one_piece(t) and self.lines_alone for t in texts]
        short = iter(self._encode_arrays([t for t, cut in zip(texts, long) if not cut], num_threads))
        return [
            np.concatenate([self._encode_arrays([p], num_threads)[0] for p in pieces(t, at=LINE_END)])
            if cut
            else next(short)
            for t, cut in zip(texts, long)
        ]

    def _encode_arrays(self, texts, num_threads):
        texts = [escape(t) for t in texts]
        if self.words is None:
            return [np.asarray(ids, dtype=self.dtype) for ids in self.sp.encode(texts, num_threads=num_threads)]
        words = [WORD.findall(t) for t in texts]
        new = list(set(itertools.chain.from_iterable(words)).difference(self.words))
        if new:  # a word's ids are kept as the bytes of its array: a text's array is their join
            encoded = self.sp.encode(new, num_threads=num_threads)
            self.words.update(zip(new, (np.asarray(ids, dtype=self.dtype).tobytes() for ids in encoded)))
        arrays = [np.frombuffer(b"".join(map(self.words.__getitem__, ws)), dtype=self.dtype) for ws in words]
        if len(self.words) > CACHED_WORDS:
            self.words.clear()
        return arrays

    def decode(self, ids):
        return unescape(self.sp.decode([int(i) for i in ids]))

    def token_bytes(self):
        """UTF-8 bytes each id contributes to decoded text (0 for control pieces such as end-of-text)."""
        n = np.zeros(self.vocab_size, dtype=np.int64)
        for i in range(self.vocab_size):
            if self.sp.is_control(i) or self.sp.is_unknown(i):
                continue
            n[i] = 1 if self.sp.is_byte(i) else len(self.sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        return n


def measure(tok, documents, max_documents=2000):
    """Characters and bytes per token, byte-fallback share, vocabulary used, round-trip failures
    (which must be 0), and the most frequent pieces, over at most `max_documents` documents."""
    chars = nbytes = tokens = fallback = failures = docs = 0
    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    is_byte = np.array([tok.sp.is_byte(i) for i in range(tok.vocab_size)])
    for doc in documents:
        ids = tok.encode(doc["text"])
        failures += tok.decode(ids) != doc["text"]
        chars += len(doc["text"])
        nbytes += len(doc["text"].encode("utf-8"))
        tokens += len(ids)
        arr = np.asarray(ids, dtype=np.int64)
        counts += np.bincount(arr, minlength=tok.vocab_size)
        fallback += int(is_byte[arr].sum())
        docs += 1
        if docs == max_documents:
            break
    return {
        "vocab_size": tok.vocab_size,
        "fingerprint": tok.fingerprint,
        "documents": docs,
        "tokens": tokens,
        "chars_per_token": chars / tokens if tokens else None,
        "bytes_per_token": nbytes / tokens if tokens else None,
        "byte_fallback_share": fallback / tokens if tokens else None,
        "vocab_used_share": float((counts > 0).mean()),
        "round_trip_failures": failures,
        "top_pieces": [
            [tok.sp.id_to_piece(int(i)), int(counts[i])]
            for i in np.argsort(-counts, kind="stable")[:TOP_PIECES]
            if counts[i]
        ],
    }
