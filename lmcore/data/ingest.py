"""Turn a source's raw files into JSON Lines documents, spread over parts by a stable hash of the id.

Ids are stable across runs: `<source>/<path inside the source>` for one document per
file, with `#<index>` appended when a file holds several documents.
"""

import contextlib
import json
import os

from lmcore.data.text import normalize
from lmcore.io import atomic_open, stable_hash

BINARY_MAGIC = (
    b"\x89PNG",
    b"%PDF",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"\xff\xd8\xff",
    b"GIF8",
    b"\x7fELF",
    b"BZh",
    b"\xfd7zXZ",
)


def is_binary(data):
    """A file whose start is a known binary signature, or more than 10% control bytes, is not text."""
    head = data[:8192]
    if head.startswith(BINARY_MAGIC):
        return True
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and control / len(head) > 0.10


def decode_text(data):
    """Bytes to normalised text (lmcore.data.text.normalize): UTF-8 with U+FFFD for bad bytes, no BOM.

    Returns (text, number of replaced byte sequences, number of control characters removed)."""
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - data.count("\ufffd".encode())
    text, controls = normalize(text.removeprefix("\ufeff"))
    return text, replaced, controls


def documents_of(source_name, rel_path, text, mode):
    """Yield (id, text) for one file under the source's `documents` mode."""
    base = f"{source_name}/{rel_path}"
    if mode == "file":
        yield base, text
    elif "split" in mode:
        for i, piece in enumerate(p for p in text.split(mode["split"]) if p.strip()):
            yield f"{base}#{i}", piece.strip("\n")
    else:
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{base}:{lineno}: not a JSON line ({e.msg}, column {e.colno}): {line[:80]!r}"
                ) from None
            if not isinstance(record, dict) or mode["jsonl"] not in record:
                found = f"keys {sorted(record)[:10]}" if isinstance(record, dict) else f"a JSON {type(record).__name__}"
                raise ValueError(f"{base}:{lineno}: no field {mode['jsonl']!r} in this line ({found})")
            yield f"{base}#{lineno}", normalize(str(record[mode["jsonl"]]))[0]  # escapes in JSON hid \r and controls


def ingest(source_name, raw_dir, manifest, mode, part_paths):
    """Write the documents of a downloaded source to `part_paths`; return statistics."""
    stats = {
        "source": source_name,
        "files": 0,
        "documents": 0,
        "characters": 0,
        "skipped": {},
        "replaced_bytes": {},
        "control_characters": {},
    }
    with contextlib.ExitStack() as stack:
        parts = [stack.enter_context(atomic_open(p)) for p in part_paths]
        for entry in manifest["files"]:
            with open(os.path.join(raw_dir, "files", entry["path"]), "rb") as f:
                data = f.read()
            if is_binary(data):
                stats["skipped"][entry["path"]] = "binary"
                continue
            text, replaced, controls = decode_text(data)
            if replaced:
                stats["replaced_bytes"][entry["path"]] = replaced
            if controls:
                stats["control_characters"][entry["path"]] = controls
            stats["files"] += 1
            for doc_id, doc_text in documents_of(source_name, entry["path"], text, mode):
                record = {"id": doc_id, "text": doc_text, "meta": {"source": source_name, "path": entry["path"]}}
                parts[stable_hash(doc_id) % len(parts)].write(
                    json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
                )
                stats["documents"] += 1
                stats["characters"] += len(doc_text)
        if stats["documents"] == 0:
            raise ValueError(
                f"source {source_name!r} yielded no documents ({len(manifest['files'])} files, skipped: "
                f"{stats['skipped']})"
            )
    return stats
