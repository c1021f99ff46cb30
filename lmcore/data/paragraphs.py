"""Paragraph-level exact dedup across the corpus (Dolma's paragraph dedup, made exact and reproducible).

A paragraph is a non-blank line (what an extractor writes for a <p>), compared lowercase with its spaces
folded. Of the paragraphs that occur more than once in the corpus, the occurrence first in the order
(document key, line) is kept, the document key being a stable hash of the document's id: the same
whatever the number of parts or jobs. Dolma tests each paragraph against a Bloom filter of those seen
before, which keeps whatever came first in its reading order and can remove a paragraph it never saw
(a false positive); here the hashes are exact and sorted.

Three steps, each bounded: `paragraph_hashes` per part ((hash, document key, line) of each paragraph of
the documents MinHash kept, 20 bytes each); `duplicate_paragraphs` per key range (the hashes of that
range from every part, sorted: memory is the range's share of the corpus's paragraphs); and, in
`dedup_apply`, each part removes its repeated paragraphs, or drops a document when more than
`max_share` of its characters repeat. Which occurrence stays is decided before any document is dropped:
a paragraph first seen in a document that is then dropped (mostly repeats) is lost from the corpus, as
with Dolma's filter; its other copies were, by construction, beside repeated text.
"""

import numpy as np

from lmcore.data.dedup import key_range
from lmcore.io import atomic_open, read_json, read_jsonl, stable_hash

HASHES = np.dtype([("hash", "<u8"), ("doc", "<u8"), ("line", "<u4")])
REPEATS = np.dtype([("part", "<u4"), ("doc", "<u8"), ("line", "<u4")])


def normalise(line):
    return " ".join(line.lower().split())


def paragraph_hashes(in_path, clusters_path, out_path, min_chars):
    """Write the (hash, document key, line) of every paragraph of at least `min_chars` characters of the
    part's documents that MinHash kept (conversations left out); return how many."""
    removed = set(read_json(clusters_path)["removed"])
    rows = []
    for doc in read_jsonl(in_path):
        if doc["id"] in removed or "messages" in doc:
            continue
        key = stable_hash(doc["id"])
        for line, text in enumerate(doc["text"].split("\n")):
            paragraph = normalise(text)
            if paragraph and len(paragraph) >= min_chars:
                rows.append((stable_hash(paragraph), key, line))
    with atomic_open(out_path, "wb") as f:
        np.save(f, np.array(rows, dtype=HASHES))
    return len(rows)


def duplicate_paragraphs(hash_paths, out_path, range_index, key_ranges):
    """Write (part, document key, line) of every paragraph of key range `range_index` that repeats one
    earlier in (document key, line) order, sorted by part; return (paragraphs of the range, repeats)."""
    lo, hi = key_range(range_index, key_ranges)
    pieces = []
    for part, path in enumerate(hash_paths):
        a = np.load(path, mmap_mode="r")
        mine = a[(a["hash"] >= lo) & ((a["hash"] < hi) if hi is not None else True)]
        pieces.append((np.full(len(mine), part, dtype=np.uint32), np.asarray(mine)))
    parts = np.concatenate([p for p, _ in pieces]) if pieces else np.zeros(0, np.uint32)
    rows = np.concatenate([r for _, r in pieces]) if pieces else np.zeros(0, HASHES)
    order = np.lexsort((rows["line"], rows["doc"], rows["hash"]))  # by hash, then the kept one first
    rows, parts = rows[order], parts[order]
    repeat = np.zeros(len(rows), dtype=bool)
    repeat[1:] = rows["hash"][1:] == rows["hash"][:-1]
    out = np.zeros(int(repeat.sum()), dtype=REPEATS)
    out["part"], out["doc"], out["line"] = parts[repeat], rows["doc"][repeat], rows["line"][repeat]
    with atomic_open(out_path, "wb") as f:
        np.save(f, out[np.argsort(out["part"], kind="stable")])
    return len(rows), len(out)


def repeats_of(repeat_paths, part):
    """{document key: set of lines} of part number `part`, from every key range's file."""
    found = {}
    for path in repeat_paths:
        a = np.load(path, mmap_mode="r")
        lo, hi = np.searchsorted(a["part"], part, "left"), np.searchsorted(a["part"], part, "right")
        for doc, line in zip(a["doc"][lo:hi].tolist(), a["line"][lo:hi].tolist()):
            found.setdefault(doc, set()).add(line)
    return found


def without_repeats(text, lines, max_share):
    """(text without the repeated lines, characters removed), or (None, characters) when more than
    `max_share` of its characters repeat."""
    kept, removed = [], 0
    for i, line in enumerate(text.split("\n")):
        if i in lines:
            removed += len(line)
        else:
            kept.append(line)
    if removed > max_share * max(1, len(text) - text.count("\n")):
        return None, removed
    return "\n".join(kept), removed


class ParagraphEdit:
    """dedup_apply's edit of one part: each document without its repeated paragraphs, or dropped; counts."""

    def __init__(self, repeat_paths, part, max_share):
        self.repeats, self.max_share = repeats_of(repeat_paths, part), max_share
        self.stats = {"paragraphs_removed": 0, "characters_removed": 0, "documents_dropped": 0}

    def __call__(self, doc):
        lines = self.repeats.get(stable_hash(doc["id"])) if "messages" not in doc else None
        if not lines:
            return doc
        text, removed = without_repeats(doc["text"], lines, self.max_share)
        self.stats["characters_removed"] += removed
        if text is None:
            self.stats["documents_dropped"] += 1
            return None
        self.stats["paragraphs_removed"] += len(lines)
        return {**doc, "text": text}
