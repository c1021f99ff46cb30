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

from lmcore.data.text import WordHasher, ngram_hashes
from lmcore.io import raw_to_npy, read_json, read_jsonl, write_json, write_jsonl

WORD_CHARS = re.compile(r"[^\W_]+")  # a run of letters and digits: what folding punctuation and whitespace leaves
DIGIT = re.compile(r"\d")
SHINGLE_CHUNK = 4096


def dedup_words(text):
    """The words of the normalised text: lowercase, digits folded to 0, no punctuation."""
    return WORD_CHARS.findall(DIGIT.sub("0", unicodedata.normalize("NFKC", text).lower()))


def exact_key(folded_words):
    """A hash of the normalised text: its words joined by one space."""
    return hashlib.blake2b(" ".join(folded_words).encode("utf-8"), digest_size=16).hexdigest()


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
                folded = dedup_words(doc["text"])
                ids.append(doc["id"])
                keys.append(exact_key(folded))
                chars.append(len(doc["text"]))
                raw.write(minhash(hash_words(folded), cfg["ngram"], a, b).tobytes())
        raw_to_npy(raw_path, npy_path, np.uint64, columns=len(a))
    write_json(json_path, {"ids": ids, "keys": keys, "chars": chars})
    return len(ids)


class UnionFind:
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]  # path halving
            i = self.parent[i]
        return i

    def union(self, i, j):
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)
        return ri != rj


def find_clusters(json_paths, npy_paths, out_path, cfg):
    """Cluster exact and near duplicates over every part; write clusters, removed ids and stats."""
    ids, keys, chars = [], [], []
    for path in json_paths:
        sig = read_json(path)
        ids += sig["ids"]
        keys += sig["keys"]
        chars += sig["chars"]
    matrix = np.concatenate([np.load(p) for p in npy_paths]) if npy_paths else np.zeros((0, 1), np.uint64)
    uf = UnionFind(len(ids))
    if cfg["exact"]:
        first = {}
        for i, key in enumerate(keys):
            uf.union(first.setdefault(key, i), i)
    near_pairs = 0
    if cfg["near"]:
        rows = cfg["rows"]
        for band in range(cfg["bands"]):
            buckets = {}
            for i, row in enumerate(matrix[:, band * rows : (band + 1) * rows]):
                buckets.setdefault(row.tobytes(), []).append(i)
            for members in buckets.values():
                for k, j in enumerate(members[1:], 1):
                    for i in members[:k]:  # verify against earlier members until j joins a cluster
                        if uf.find(i) != uf.find(j) and np.mean(matrix[i] == matrix[j]) >= cfg["threshold"]:
                            near_pairs += uf.union(i, j)
                            break
    groups = {}
    for i in range(len(ids)):
        groups.setdefault(uf.find(i), []).append(i)
    clusters = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=ids.__getitem__)
        s = members[0]  # the smallest id survives
        # each removed member with its estimated Jaccard similarity to the survivor (the share of equal MinHash rows)
        similar = [{"id": ids[i], "exact": keys[i] == keys[s], "jaccard": round(float(np.mean(matrix[i] == matrix[s])), 4)} for i in members[1:]]
        clusters.append({"survivor": ids[s], "members": [ids[i] for i in members], "removed": similar})
    clusters.sort(key=lambda c: (-len(c["members"]), c["survivor"]))
    removed = sorted(r["id"] for c in clusters for r in c["removed"])
    by_id = dict(zip(ids, chars))
    removed_chars = sum(by_id[d] for d in removed)
    stats = {
        "documents_in": len(ids),
        "clusters": len(clusters),
        "near_duplicate_pairs": near_pairs,
        "documents_removed": len(removed),
        "characters_removed": removed_chars,
        "documents_out": len(ids) - len(removed),
        "characters_out": sum(chars) - removed_chars,
    }
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
