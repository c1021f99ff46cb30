"""What a per-document data job needs for the longest document of its part, said before it starts.

clean, dedup_signatures and shard hold one document at a time, with views of it (words, their
lengths and hashes, n-gram hashes, token ids) that take a few times its size (bench/document_memory.py
measures the factors below; docs/benchmarks.md has its figures). A job
whose `mem_mb` cannot hold that for the longest document of its part stops before reading it,
naming the document, rather than being killed part way by a cluster's memory limit.
"""

import json
import os

BYTES_PER_DOCUMENT_BYTE = {"clean": 10, "dedup_signatures": 10, "shard": 4}  # the measured figures, rounded up
BASE_MB = 200  # the interpreter, numpy and the stage's own state


def longest_document(paths):
    """(bytes, id, file) of the longest line of a JSON Lines part, in one file or several."""
    longest, at, where = 0, None, None
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        with open(path, "rb") as f:
            for line in f:
                if len(line) > longest:
                    longest, at, where = len(line), line, path
    return longest, json.loads(at)["id"] if at else None, where


def check_document_memory(paths, stage, mem_mb):
    """Raise MemoryError, naming the document and the setting to raise, when the longest document of the
    part at `paths` (one file or several) needs more than `mem_mb` in `stage`; return the estimate in MB."""
    size, doc_id, path = longest_document(paths)
    need = BASE_MB + BYTES_PER_DOCUMENT_BYTE[stage] * size / 1e6
    if need > mem_mb:
        raise MemoryError(
            f"{path}: document {doc_id!r} holds {size / 1e6:,.1f} MB of JSON, and {stage} needs "
            "about "
            f"{need:,.0f} MB for it ({BYTES_PER_DOCUMENT_BYTE[stage]} times the document, and {BASE_MB} MB), more "
            "than its "
            f"mem_mb of {mem_mb:,}: raise `resources.{stage}.mem_mb` in the config to at least {need:,.0f}"
        )
    return need
