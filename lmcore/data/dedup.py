"""Duplicate removal across all sources and parts, in four steps, no job holding every document.

`signatures` runs per part: for each document an exact key (a hash of its normalised text)
and a MinHash signature over word n-grams (Broder 1997), and, per LSH band (bands x rows;
a pair collides in some band with probability 1 - (1 - J^rows)^bands) and for the exact key,
the part's (key, row) pairs sorted by key. `candidate_pairs` runs per band group and key
range (datatrove's layout): it reads from every part only the slice of its bands' sorted keys
that falls in its range, finds the documents that share a key, and writes the pairs that are
duplicates: equal signatures for an exact key, an estimated Jaccard similarity at the
threshold for a band. `find_clusters` joins the pairs by union-find (memory grows with the
duplicates, not the corpus) and `apply_clusters` runs per part and drops every member but the
smallest id, so the result does not depend on how documents were spread over parts.
"""

import bisect
import hashlib
import os
import re
import tempfile
import unicodedata

import numpy as np

from lmcore.data.text import WordHasher, ngram_hashes, pieces
from lmcore.io import atomic_path, raw_to_npy, read_json, read_jsonl, write_json, write_jsonl

WORD_CHARS = re.compile(r"[^\W_]+")  # a run of letters and digits: what folding punctuation and whitespace leaves
DIGIT = re.compile(r"\d")
SHINGLE_CHUNK = 4096


def dedup_words(text):
    """The words of the normalised text: lowercase, digits folded to 0, no punctuation; a list per piece
    of the text (lmcore.data.text.pieces), so that a long document is never one list of words."""
    for piece in pieces(text):
        yield WORD_CHARS.findall(DIGIT.sub("0", unicodedata.normalize("NFKC", piece).lower()))


def fingerprint(text, hash_words):
    """(exact key, word hashes) of a text: the key hashes its normalised words joined by one space."""
    key, hashes, joined = hashlib.blake2b(digest_size=16), [], False
    for ws in dedup_words(text):
        if ws:
            key.update(((" " if joined else "") + " ".join(ws)).encode("utf-8"))
            joined = True
        hashes.append(hash_words(ws))
    return key.hexdigest(), np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)


def permutations(num_perm, seed):
    """MinHash's hash family: x -> a x + b mod 2^64 with odd a, a bijection of the 64-bit hashes."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    return a, b


def minhash(word_hashes, n, a, b):
    """The minimum of every permuted hash over the document's distinct n-grams."""
    shingles = np.unique(ngram_hashes(word_hashes, min(n, max(1, len(word_hashes)))))
    sig = np.full(len(a), np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(0, len(shingles), SHINGLE_CHUNK):  # chunks bound the (permutations x shingles) matrix
            permuted = np.multiply.outer(a, shingles[i : i + SHINGLE_CHUNK])
            permuted += b[:, None]
            np.minimum(sig, permuted.min(axis=1), out=sig)
    return sig


def band_keys(sig, bands, rows):
    """(documents, bands) uint64: each LSH band's `rows` MinHash values folded into one 64-bit key
    (a x mod 2^64 with odd multipliers, summed). Keys that collide without equal bands only add a
    candidate pair, which the similarity check then judges."""
    mix = np.random.default_rng(0).integers(0, 2**62, rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return (sig[:, : bands * rows].reshape(len(sig), bands, rows) * mix).sum(axis=2, dtype=np.uint64)


def signatures(in_path, json_path, npy_path, bands_path, cfg):
    """Write {ids, keys, chars}, a uint64 (documents x bands*rows) MinHash matrix, and a (bands + 1,
    documents, 2) uint64 array: per band, then for the exact key's first 64 bits, (key, row) sorted by key.

    Signatures stream to a raw file as they are computed, so memory does not grow with the part but
    for one key per band and document (8 bytes each), which the sorts need."""
    a, b = permutations(cfg["bands"] * cfg["rows"], cfg["seed"])
    hash_words = WordHasher()
    ids, keys, chars = [], [], []
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(npy_path))) as tmp:
        raw_path = os.path.join(tmp, "signatures.raw")
        with open(raw_path, "wb") as raw:
            for doc in read_jsonl(in_path):
                key, word_hashes = fingerprint(doc["text"], hash_words)
                ids.append(doc["id"])
                keys.append(key)
                chars.append(len(doc["text"]))
                raw.write(minhash(word_hashes, cfg["ngram"], a, b).tobytes())
        raw_to_npy(raw_path, npy_path, np.uint64, columns=len(a))
    exact = np.frombuffer(bytes.fromhex("".join(k[:16] for k in keys)), dtype=np.uint64)
    columns = [band_keys(block, cfg["bands"], cfg["rows"]) for block in npy_rows(npy_path, 8192)]
    columns = np.concatenate(columns + [np.zeros((0, cfg["bands"]), np.uint64)])
    with atomic_path(bands_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint64, shape=(cfg["bands"] + 1, len(ids), 2))
        for band, k in enumerate([*columns.T, exact]):
            order = np.argsort(k, kind="stable")
            out[band, :, 0], out[band, :, 1] = k[order], order
        out.flush()
        del out
    write_json(json_path, {"ids": ids, "keys": keys, "chars": chars})
    return len(ids)


def npy_rows(path, chunk):
    """Blocks of up to `chunk` rows of a 2-d .npy file, read with plain reads (a memory map would keep
    every page it touched resident)."""
    header = np.load(path, mmap_mode="r")  # shape, dtype and where the data start; no page is read
    shape, dtype = header.shape, header.dtype
    row_bytes = shape[1] * dtype.itemsize
    with open(path, "rb") as f:
        f.seek(header.offset)
        for start in range(0, shape[0], chunk):
            n = min(chunk, shape[0] - start)
            yield np.frombuffer(f.read(n * row_bytes), dtype=dtype).reshape(n, shape[1])


class UnionFind:
    def __init__(self, n):
        self.parent = np.arange(n)

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]  # path halving
            i = self.parent[i]
        return i

    def union(self, i, j):
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)
        return bool(ri != rj)

    def roots(self):
        """Every element's root at once: pointer jumping, parent = parent[parent] until nothing moves."""
        root = self.parent.copy()
        while not np.array_equal(nxt := root[root], root):
            root = nxt
        return root


def runs(values):
    """The groups of 2 or more equal values (rows, for a matrix) as arrays of indices (each ascending),
    ordered by smallest index: what a dict of lists would collect, in the order it would first see them."""
    order = np.lexsort(values.T[::-1]) if values.ndim == 2 else np.argsort(values, kind="stable")
    v = values[order]
    change = (v[1:] != v[:-1]).reshape(len(v) - 1, -1).any(axis=1) if len(v) else np.zeros(0, bool)
    starts = np.flatnonzero(np.r_[True, change])
    groups = [g for g in np.split(order, starts[1:]) if len(g) > 1]
    return sorted(groups, key=lambda g: g[0])


class Signatures:
    """Row i of the parts' signature matrices, taken in order as one, read from its file when needed: a memory
    map would keep every page it touched resident (a third of a GB for 345,000 documents)."""

    def __init__(self, npy_paths):
        self.headers = [np.load(p, mmap_mode="r") for p in npy_paths]  # shapes and data offsets; no page is read
        self.offsets = np.cumsum([0] + [len(h) for h in self.headers])
        self.files = [open(p, "rb") for p in npy_paths]

    def __call__(self, i):
        part = int(np.searchsorted(self.offsets, i, side="right")) - 1
        h = self.headers[part]
        row_bytes = h.shape[1] * h.dtype.itemsize
        data = os.pread(self.files[part].fileno(), row_bytes, h.offset + (int(i) - self.offsets[part]) * row_bytes)
        return np.frombuffer(data, dtype=h.dtype)

    def jaccard(self, i, j):  # the share of equal MinHash rows: the estimated Jaccard similarity
        return float(np.mean(self(i) == self(j)))

    def close(self):
        for f in self.files:
            f.close()


def key_range(key_range_index, key_ranges):
    """[lo, hi) of the 64-bit keys that range `key_range_index` of `key_ranges` covers (hi None: to the end)."""
    lo = key_range_index * 2**64 // key_ranges
    hi = (key_range_index + 1) * 2**64 // key_ranges
    return np.uint64(lo), (np.uint64(hi) if hi < 2**64 else None)


def band_slice(bands_paths, band, lo, hi):
    """(keys, global rows) of every part's documents whose `band` key lies in [lo, hi), sorted by key then row.
    Two binary searches find a part's slice (a few pages read) and one plain read takes it: a memory map
    would keep every page it touched resident."""
    keys, rows, offset = [], [], 0
    for path in bands_paths:
        header = np.load(path, mmap_mode="r")  # (bands + 1, documents, 2); each band sorted by key
        n, column = header.shape[1], header[band, :, 0]
        start = bisect.bisect_left(column, lo)
        stop = n if hi is None else bisect.bisect_left(column, hi)
        with open(path, "rb") as f:
            data = os.pread(f.fileno(), (stop - start) * 16, header.offset + (band * n + start) * 16)
        pairs = np.frombuffer(data, dtype=np.uint64).reshape(-1, 2)
        keys.append(pairs[:, 0])
        rows.append(pairs[:, 1].astype(np.int64) + offset)
        offset += n
    keys, rows = np.concatenate(keys), np.concatenate(rows)
    order = np.lexsort((rows, keys))
    return keys[order], rows[order]


def candidate_pairs(bands_paths, npy_paths, out_path, group, key_range_index, cfg):
    """Write the duplicate pairs that band group `group` (bands b with b % band_groups == group; the exact key
    is band `bands`) finds in key range `key_range_index`: an (n, 3) int64 array of (band, i, j), i < j global
    rows. Equal exact keys pair when the signatures are equal too; documents sharing a band key pair when
    their estimated Jaccard similarity reaches the threshold, each checked against the earlier members of its
    bucket until one passes (a union-find over the bucket skips those already joined)."""
    sig = Signatures(npy_paths)
    lo, hi = key_range(key_range_index, cfg["key_ranges"])
    found = []
    bands = [b for b in range(cfg["bands"] + 1) if b % cfg["band_groups"] == group]
    for band in bands:
        exact = band == cfg["bands"]
        if (exact and not cfg["exact"]) or (not exact and not cfg["near"]):
            continue
        keys, rows = band_slice(bands_paths, band, lo, hi)
        bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
        shared = np.flatnonzero(np.diff(bounds) > 1)  # buckets of two documents or more: few, looped over
        for s, e in zip(bounds[shared], bounds[shared + 1]):
            members = rows[s:e]
            if exact:
                first = sig(members[0])
                found += [(band, members[0], j) for j in members[1:] if np.array_equal(sig(j), first)]
                continue
            bucket = UnionFind(len(members))
            for k in range(1, len(members)):
                for i in range(k):
                    if bucket.find(i) != bucket.find(k) and sig.jaccard(members[i], members[k]) >= cfg["threshold"]:
                        bucket.union(i, k)
                        found.append((band, members[i], members[k]))
                        break
    sig.close()
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.array(found, dtype=np.int64).reshape(-1, 3))
    return len(found)


def part_rows(json_paths, wanted):
    """(ids, exact keys, lengths) of the global rows `wanted` (sorted), and the corpus's documents and characters:
    one part's statistics in memory at a time."""
    ids, keys, chars = {}, {}, {}
    documents = characters = offset = 0
    for path in json_paths:
        part = read_json(path)
        n = len(part["ids"])
        for i in wanted[(wanted >= offset) & (wanted < offset + n)]:
            ids[i], keys[i], chars[i] = (
                part["ids"][i - offset].encode("utf-8"),
                part["keys"][i - offset],
                part["chars"][i - offset],
            )
        documents += n
        characters += sum(part["chars"])
        offset += n
    return ids, keys, chars, documents, characters


def find_clusters(pairs_paths, json_paths, npy_paths, out_path, cfg):
    """Join the duplicate pairs into clusters; write clusters, removed ids and stats.

    Memory grows with the duplicates, not the corpus: the pairs, a union-find over the documents that
    appear in them, and their ids; every part's statistics are read one part at a time."""
    pairs = np.concatenate([np.load(p) for p in pairs_paths] or [np.zeros((0, 3), np.int64)])
    exact_first = np.where(pairs[:, 0] == cfg["bands"], -1, pairs[:, 0])  # then the bands in order
    pairs = pairs[np.argsort(exact_first, kind="stable")]
    nodes = np.unique(pairs[:, 1:])
    ends = np.searchsorted(nodes, pairs[:, 1:])
    uf = UnionFind(len(nodes))
    near_pairs = 0
    for (band, _, _), (i, j) in zip(pairs, ends):
        joined = uf.union(i, j)
        near_pairs += joined and band != cfg["bands"]
    ids, keys, chars, documents, characters = part_rows(json_paths, nodes)
    sig = Signatures(npy_paths)
    clusters, removed_chars = [], 0
    for members in runs(uf.roots()):
        members = sorted(nodes[members].tolist(), key=ids.__getitem__)
        s = members[0]  # the smallest id survives
        # each removed member with its estimated Jaccard similarity to the survivor
        similar = [
            {"id": ids[i].decode(), "exact": keys[i] == keys[s], "jaccard": round(sig.jaccard(i, s), 4)}
            for i in members[1:]
        ]
        clusters.append(
            {"survivor": ids[s].decode(), "members": [ids[i].decode() for i in members], "removed": similar}
        )
        removed_chars += sum(chars[i] for i in members[1:])
    sig.close()
    clusters.sort(key=lambda c: (-len(c["members"]), c["survivor"]))
    removed = sorted(r["id"] for c in clusters for r in c["removed"])
    stats = {
        "documents_in": documents,
        "clusters": len(clusters),
        "near_duplicate_pairs": int(near_pairs),
        "documents_removed": len(removed),
        "characters_removed": removed_chars,
        "documents_out": documents - len(removed),
        "characters_out": characters - removed_chars,
    }
    write_json(out_path, {"stats": stats, "clusters": clusters, "removed": removed})
    return stats


def apply_clusters(in_path, clusters_path, out_path, edit=None):
    """Copy one part without the removed duplicates; return its counts (kept, removed). `edit(doc)`, where
    given, returns the document to write or None to drop it (lmcore.data.paragraphs.ParagraphEdit)."""
    removed = set(read_json(clusters_path)["removed"])
    counts = {"kept": 0, "removed": 0}

    def kept():
        for doc in read_jsonl(in_path):
            if doc["id"] in removed:
                counts["removed"] += 1
                continue
            doc = edit(doc) if edit else doc
            if doc is not None:
                counts["kept"] += 1
                yield doc

    write_jsonl(out_path, kept())
    return counts
