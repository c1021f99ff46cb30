"""Exact duplicate removal across all sources and parts, in three steps.

`signatures` runs per part, `find_clusters` once over every part's signatures, and
`apply_clusters` per part again, so that only the small signature files meet.
Within each cluster the smallest id survives, which makes the result independent
of how documents were spread over parts.
"""
import hashlib
import re
import unicodedata

from lmcore.io import read_json, read_jsonl, write_json, write_jsonl

PUNCT_OR_SPACE = re.compile(r"[\W_]+")
DIGIT = re.compile(r"\d")


def dedup_text(text):
    """Lowercase, digits folded to 0, punctuation and whitespace folded to one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    return PUNCT_OR_SPACE.sub(" ", DIGIT.sub("0", text)).strip()


def exact_key(text):
    return hashlib.blake2b(dedup_text(text).encode("utf-8"), digest_size=16).hexdigest()


def signatures(in_path, out_path):
    """Write {ids, keys, chars} for one part; return the number of documents."""
    ids, keys, chars = [], [], []
    for doc in read_jsonl(in_path):
        ids.append(doc["id"])
        keys.append(exact_key(doc["text"]))
        chars.append(len(doc["text"]))
    write_json(out_path, {"ids": ids, "keys": keys, "chars": chars})
    return len(ids)


def find_clusters(signature_paths, out_path, exact=True):
    """Group documents with equal keys; write clusters, removed ids and statistics; return the stats."""
    by_key, chars = {}, {}
    for path in signature_paths:
        sig = read_json(path)
        for doc_id, key, n in zip(sig["ids"], sig["keys"], sig["chars"]):
            by_key.setdefault(key if exact else doc_id, []).append(doc_id)
            chars[doc_id] = n
    clusters = [sorted(members) for members in by_key.values() if len(members) > 1]
    clusters.sort(key=lambda c: (-len(c), c[0]))
    removed = sorted(doc_id for c in clusters for doc_id in c[1:])
    stats = {
        "documents_in": len(chars),
        "clusters": len(clusters),
        "documents_removed": len(removed),
        "characters_removed": sum(chars[d] for d in removed),
        "documents_out": len(chars) - len(removed),
        "characters_out": sum(chars.values()) - sum(chars[d] for d in removed),
    }
    write_json(out_path, {"stats": stats, "clusters": [{"survivor": c[0], "members": c} for c in clusters], "removed": removed})
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
