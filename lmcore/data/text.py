"""Text as every stage sees it: normalised once, at ingest; words and n-grams as integer hashes,
computed with numpy over whole arrays; long texts in pieces.

Shared by the repetition filters (clean) and MinHash (dedup): each word is hashed once
(crc32, the same on every machine), and an n-gram's hash is a polynomial in its word
hashes, computed for every position at once with uint64 arithmetic that wraps.
"""

import re
import unicodedata
import zlib

import numpy as np

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # control characters but tab and newline
MULTIPLIER = np.uint64(0x100000001B3)  # an odd 64-bit constant (the FNV prime) for the polynomial


def normalize(text):
    """(text, control characters removed): LF line endings, no control characters but tab and newline,
    NFC, no spaces or tabs at the end of a line. Ingest applies it to every document, once."""
    text, controls = CONTROL.subn("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = unicodedata.normalize("NFC", text)
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):  # most texts have no trailing space
        text = "\n".join([line.rstrip(" \t") for line in text.split("\n")])
    return text, controls


PIECE_CHARS = 1 << 20
WHITESPACE = re.compile(r"\s")  # what str.split() splits at
LINE_END = re.compile(r"\n")


def one_piece(text):
    """Whether `pieces` cuts `text` at all."""
    return len(text) <= PIECE_CHARS


def pieces(text, size=None, at=WHITESPACE):
    """`text` in pieces of about `size` (PIECE_CHARS) characters, each ending just after a character
    that `at` matches, whitespace by default (or at the end), so that the words of the pieces, in
    order, are the words of the text."""
    size = size or PIECE_CHARS
    start = 0
    while start < len(text):
        space = at.search(text, start + size - 1) if start + size < len(text) else None
        end = space.end() if space else len(text)
        yield text[start:end]
        start = end


class WordHasher:
    """crc32 of each word, remembered in a cache that is emptied when it passes `max_cache` words
    (bounded memory; a plain memo, not a most-frequent-words cache)."""

    def __init__(self, max_cache=1_000_000):
        self.cache, self.max_cache = {}, max_cache

    def __call__(self, word_list):
        cache = self.cache
        if len(cache) > self.max_cache:
            cache.clear()
        for w in set(word_list).difference(cache):
            cache[w] = zlib.crc32(w.encode("utf-8")) + 1
        return np.fromiter(map(cache.__getitem__, word_list), dtype=np.uint64, count=len(word_list))


def ngram_hashes(word_hashes, n):
    """Hash of the n-gram starting at every position (len(word_hashes) - n + 1 of them)."""
    count = len(word_hashes) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = word_hashes[:count].copy()
        for k in range(1, n):
            h = h * MULTIPLIER + word_hashes[k : k + count]
    return h
