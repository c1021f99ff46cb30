"""Duplicate removal across all sources and parts, in three steps.

`signatures` runs per part: for each document an exact key (a hash of its normalised
text) and a MinHash signature over word n-grams (Broder 1997). `find_clusters` runs once
over every part's signatures: equal keys, and LSH candidates (bands x rows; the pair
collides in some band with probability 1 - (1 - J^rows)^bands) whose estimated Jaccard
similarity reaches the threshold, are joined by union-find. `apply_clusters` runs per
part and drops every member but the smallest id, so the result does not depend on how
documents were spread over parts.
"""

import hashlib
import os
import re
import tempfile
import unicodedata

import numpy as np

from lmcore.data.text import WordHasher, ngram_hashes, pieces
from lmcore.io import raw_to_npy, read_json, read_jsonl, write_json, write_jsonl

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


def signatures(in_path, json_path, npy_path, cfg):
    """Write {ids, keys, chars} and a uint64 (documents x bands*rows) MinHash matrix for one part.

    Signatures stream to a raw file as they are computed, so memory does not grow with the part."""
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
    write_json(json_path, {"ids": ids, "keys": keys, "chars": chars})
    return len(ids)


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


def band_keys(npy_paths, bands, rows, chunk=8192):
    """(documents, bands) uint64: each LSH band's `rows` MinHash values folded into one 64-bit key
    (a x mod 2^64 with odd multipliers, summed). Keys that collide without equal bands only add a
    candidate pair, which the similarity check then judges; the matrix itself is never held whole."""
    mix = np.random.default_rng(0).integers(0, 2**62, rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = [np.zeros((0, bands), np.uint64)]
    with np.errstate(over="ignore"):
        for path in npy_paths:
            for block in npy_rows(path, chunk):
                keys.append(
                    (block[:, : bands * rows].reshape(len(block), bands, rows) * mix).sum(axis=2, dtype=np.uint64)
                )
    return np.concatenate(keys)


def runs(values):
    """The groups of 2 or more equal values (rows, for a matrix) as arrays of indices (each ascending),
    ordered by smallest index: what a dict of lists would collect, in the order it would first see them."""
    order = np.lexsort(values.T[::-1]) if values.ndim == 2 else np.argsort(values, kind="stable")
    v = values[order]
    change = (v[1:] != v[:-1]).reshape(len(v) - 1, -1).any(axis=1) if len(v) else np.zeros(0, bool)
    starts = np.flatnonzero(np.r_[True, change])
    groups = [g for g in np.split(order, starts[1:]) if len(g) > 1]
    return sorted(groups, key=lambda g: g[0])


def find_clusters(json_paths, npy_paths, out_path, cfg):
    """Cluster exact and near duplicates over every part; write clusters, removed ids and stats.

    Memory grows with the number of documents, not their length: ids, exact keys, lengths, one
    64-bit key per LSH band and the union-find, all numpy arrays; the signatures stay on disk, read
    a block at a time, and a candidate pair's two rows are read when it is checked
    (bench/data_stages.py prints the peak)."""
    ids, keys, chars = [], [], []
    for path in json_paths:
        sig = read_json(path)
        ids.append(np.array([i.encode("utf-8") for i in sig["ids"]], dtype=bytes))  # utf-8 orders as the strings do
        keys.append(np.frombuffer(bytes.fromhex("".join(sig["keys"])), dtype=np.uint64).reshape(-1, 2))
        chars.append(np.array(sig["chars"], dtype=np.int64))
    ids = np.concatenate(ids) if ids else np.zeros(0, bytes)
    keys = np.concatenate(keys) if keys else np.zeros((0, 2), np.uint64)
    chars = np.concatenate(chars) if chars else np.zeros(0, np.int64)
    # Row i of the concatenated matrix is read from its part's file when a pair is checked; a memory
    # map would keep every page it touched resident (a third of a GB for 345,000 documents).
    headers = [np.load(p, mmap_mode="r") for p in npy_paths]  # shapes and data offsets; no page is read
    offsets = np.cumsum([0] + [len(h) for h in headers])
    files = [open(p, "rb") for p in npy_paths]

    def signature(i):
        part = int(np.searchsorted(offsets, i, side="right")) - 1
        h = headers[part]
        row_bytes = h.shape[1] * h.dtype.itemsize
        data = os.pread(files[part].fileno(), row_bytes, h.offset + (i - offsets[part]) * row_bytes)
        return np.frombuffer(data, dtype=h.dtype)

    def jaccard(i, j):  # the share of equal MinHash rows: the estimated Jaccard similarity
        return float(np.mean(signature(i) == signature(j)))

    uf = UnionFind(len(ids))
    if cfg["exact"]:
        for members in runs(keys):
            for i in members[1:]:
                uf.union(members[0], i)
    near_pairs = 0
    if cfg["near"]:
        for band in band_keys(npy_paths, cfg["bands"], cfg["rows"]).T:
            for members in runs(band):
                for k, j in enumerate(members[1:], 1):
                    for i in members[:k]:  # verify against earlier members until j joins a cluster
                        if uf.find(i) != uf.find(j) and jaccard(i, j) >= cfg["threshold"]:
                            near_pairs += uf.union(i, j)
                            break
    clusters, removed_chars = [], 0
    for members in runs(uf.roots()):
        members = sorted(members, key=ids.__getitem__)
        s = members[0]  # the smallest id survives
        # each removed member with its estimated Jaccard similarity to the survivor
        similar = [
            {"id": ids[i].decode(), "exact": bool((keys[i] == keys[s]).all()), "jaccard": round(jaccard(i, s), 4)}
            for i in members[1:]
        ]
        clusters.append(
            {"survivor": ids[s].decode(), "members": [ids[i].decode() for i in members], "removed": similar}
        )
        removed_chars += int(chars[members[1:]].sum())
    clusters.sort(key=lambda c: (-len(c["members"]), c["survivor"]))
    removed = sorted(r["id"] for c in clusters for r in c["removed"])
    stats = {
        "documents_in": len(ids),
        "clusters": len(clusters),
        "near_duplicate_pairs": near_pairs,
        "documents_removed": len(removed),
        "characters_removed": removed_chars,
        "documents_out": len(ids) - len(removed),
        "characters_out": int(chars.sum()) - removed_chars,
    }
    for f in files:
        f.close()
    write_json(out_path, {"stats": stats, "clusters": clusters, "removed": removed})
    return stats


def apply_clusters(in_path, clusters_path, out_path):
    """Copy one part without the removed duplicates; return (kept, removed) counts."""
    removed = set(read_json(clusters_path)["removed"])
    counts = {"kept": 0, "removed": 0}

    def kept():
        for doc in read_jsonl(in_path):
            if doc["id"] in removed:
                counts["removed"] += 1
                continue
            counts["kept"] += 1
            yield doc

    write_jsonl(out_path, kept())
    return counts
