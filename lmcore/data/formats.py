"""A raw file's records, read as a stream a unit at a time, whatever its format.

A unit is what one ingest job reads of a file: a byte range of a plain JSON Lines file
(cut at line starts every CHUNK_BYTES, by the index `line_index` wrote at download), one of
a parquet file's row groups, or a whole file (compressed, arrow, text). Units depend on
the files alone, so the documents and their ids do not depend on how many jobs read them.
Nothing is read whole: text and JSON Lines a block or a line at a time (gzip, bz2, xz and
zstd decompressed as they are read), parquet and arrow a record batch at a time, only the
columns a source names.
"""

import bz2
import codecs
import dataclasses
import gzip
import hashlib
import json
import lzma
import os

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

CHUNK_BYTES = 64 << 20  # a plain JSON Lines file is cut into units of about this size
BLOCK = 1 << 20
RECORD_MODES = ("jsonl", "parquet", "arrow")
CONVERSATION_MODES = ("chat", "chosen", "prompt")  # records holding conversations (chosen: preference pairs)
BY_SUFFIX = (*CONVERSATION_MODES, "html")  # record kinds whose container the file's suffix names
DATASETS_METADATA = ("dataset_info.json", "state.json")  # beside the .arrow files `save_to_disk` writes


class BadFile(ValueError):
    """A file that is not what its name or its source's `documents` says; the message names it and the place."""


class Budget:
    """What a compressed file or archive may still unpack to: `max_expansion` times its size, 1 MB at least."""

    def __init__(self, path, name, max_expansion):
        self.name, self.size, self.ratio = name, os.path.getsize(path), max_expansion
        self.limit = self.left = max(max_expansion * self.size, 1e6)

    def take(self, n):
        self.left -= n
        if self.left < 0:
            raise BadFile(
                f"{self.name} unpacks to more than {self.limit:,.0f} bytes, {self.ratio:g} times its own "
                f"{self.size:,} (a decompression bomb, or text that compresses unusually well: then raise the "
                f"source's max_expansion); stopped there"
            )


def mode_of(documents):
    """(kind, field) of a source's `documents`: ("file", None), ("split", delimiter), (record mode, text field),
    ("chat", messages field), ("chosen", chosen field: a preference pair), ("prompt", prompt field), ("dialogue",
    speaker pattern), ("html", HTML field) or ("warc", None)."""
    if documents in ("file", "warc"):
        return documents, None
    kind = next(k for k in ("split", *RECORD_MODES, *BY_SUFFIX, "dialogue") if k in documents)
    return kind, documents[kind]


def container(kind, path):
    """The record format a file of a source of documents `kind` is read as: the kind itself for a record
    mode; for conversations and HTML records, the file's suffix says (.parquet, .arrow, else JSON Lines of
    any compression)."""
    if kind not in BY_SUFFIX:
        return kind
    suffix = os.path.splitext(path[: -len(compression(path))] if compression(path) else path)[1].lower()
    return {".parquet": "parquet", ".arrow": "arrow"}.get(suffix, "jsonl")


def compression(path):
    """The suffix of a compressed file (.gz, .bz2, .xz, .zst), or None."""
    suffix = os.path.splitext(path)[1].lower()
    return suffix if suffix in (".gz", ".bz2", ".xz", ".zst") else None


def zstd_blocks(f):
    """Decompressed blocks of a zstd file, frame after frame; a frame cut short is an error (zstandard's
    stream reader would end quietly)."""
    d, pending = zstandard.ZstdDecompressor().decompressobj(), False
    while data := f.read(BLOCK):
        while data:
            yield d.decompress(data)
            pending = not d.eof
            data = d.unused_data if d.eof else b""
            if d.eof:
                d = zstandard.ZstdDecompressor().decompressobj()
    if pending:
        raise EOFError("the zstd stream is cut short")


def blocks(path, max_expansion=100, start=0):
    """The bytes of a file in blocks from byte `start` (0 for a compressed file), decompressed by its suffix,
    checked against the decompression budget."""
    kind = compression(path)
    budget = Budget(path, os.path.basename(path), max_expansion) if kind else None
    with open(path, "rb") as raw:
        raw.seek(start)
        if kind == ".zst":
            source = zstd_blocks(raw)
        else:
            f = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[kind](raw) if kind else raw
            source = iter(lambda: f.read(BLOCK), b"")
        for block in source:
            if budget:
                budget.take(len(block))
            if block:
                yield block


def lines(path, start=0, stop=None, max_expansion=100):
    """(byte offset, line without its newline) of every line that starts in [start, stop) (the whole file
    when compressed)."""
    offset, carry = start, b""
    for block in blocks(path, max_expansion, start):
        block = carry + block
        cut = block.rfind(b"\n") + 1
        carry = block[cut:]
        for line in block[: cut - 1].split(b"\n") if cut else ():  # lines end at \n only, as line_index counts
            if stop is not None and offset >= stop:
                return
            yield offset, line
            offset += len(line) + 1
    if carry and (stop is None or offset < stop):
        yield offset, carry


def line_index(path):
    """(sha256, [[offset, line number], ...]) of a file: where each CHUNK_BYTES unit of a plain text file
    starts (at the first line start at or after each multiple of CHUNK_BYTES). One read does both, at download."""
    digest, index, lineno, offset, want = hashlib.sha256(), [[0, 1]], 1, 0, CHUNK_BYTES
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
            while want < offset + len(block):  # a unit boundary: the line start after `want`
                newline = block.find(b"\n", max(want - offset - 1, 0))
                if newline < 0:
                    want = offset + len(block) + 1  # no line starts in this block after `want`: look on
                    break
                at = offset + newline + 1
                index.append([at, lineno + block.count(b"\n", 0, newline + 1)])
                want = max(want, at) + CHUNK_BYTES
            lineno += block.count(b"\n")
            offset += len(block)
    size = offset
    return digest.hexdigest(), [i for i in index if i[0] < size] or [[0, 1]]


@dataclasses.dataclass
class Unit:
    path: str  # inside the source's files/
    start: int  # byte offset (JSON Lines), row group (parquet); 0 for a whole file
    stop: int | None  # where the next unit starts; None: to the end
    first: int  # the line (1-based) or row (0-based) the unit starts at
    bytes: int  # its size, to balance the jobs


def units_of(files_dir, entry, kind):
    """The units of one manifest entry under the source's documents `kind`."""
    path, size = os.path.join(files_dir, entry["path"]), entry["bytes"]
    kind = container(kind, entry["path"])
    if kind == "jsonl" and not compression(path) and len(entry.get("lines", ())) > 1:
        starts = entry["lines"]
        return [
            Unit(entry["path"], at, nxt, lineno, nxt - at)
            for (at, lineno), nxt in zip(starts, [s[0] for s in starts[1:]] + [size])
        ]
    if kind == "parquet":
        meta = parquet_file(path).metadata
        units, row = [], 0
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            units.append(Unit(entry["path"], g, g + 1, row, rg.total_byte_size))
            row += rg.num_rows
        return units
    return [Unit(entry["path"], 0, None, 1 if kind in ("jsonl", "split") else 0, size)]


def share(units, reader, readers):
    """The units ingest job `reader` of `readers` reads: a contiguous run, balanced by bytes."""
    total = sum(u.bytes for u in units) or 1
    mine, before = [], 0
    for u in units:
        if min(int(readers * (before + u.bytes / 2) / total), readers - 1) == reader:
            mine.append(u)
        before += u.bytes
    return mine


def parquet_file(path):
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise BadFile(f"{path}: not a parquet file ({e})") from None


def arrow_batches(path, columns, text=True):
    """Record batches of an arrow file: the IPC stream `datasets`' `save_to_disk` writes, or the IPC file format."""
    for opener in (pa.ipc.open_stream, pa.ipc.open_file):
        try:
            reader = opener(pa.OSFile(path))
            break
        except pa.ArrowInvalid:
            continue
    else:
        raise BadFile(f"{path}: not an arrow file (neither the IPC stream `save_to_disk` writes nor an IPC file)")
    check_columns(path, reader.schema, columns, text)
    for batch in (
        reader if opener is pa.ipc.open_stream else (reader.get_batch(i) for i in range(reader.num_record_batches))
    ):
        yield batch.select(columns)


def check_columns(path, schema, columns, text=True):
    """Raise BadFile naming the file when a column is missing or (`text`) the first column holds no strings."""
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise BadFile(f"{path}: no column {missing[0]!r} (columns: {schema.names[:20]})")
    if not text:
        return
    text_type = schema.field(columns[0]).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_string_view(text_type)):
        raise BadFile(f"{path}: column {columns[0]!r} holds {text_type}, not text")


def records(files_dir, unit, kind, columns, max_expansion=100):
    """(position, dict of `columns`) for a record mode or conversations, position the line (JSON Lines) or
    row; the first column is the text (a record mode's). A JSON line that is not an object raises BadFile
    naming the file and line."""
    path = os.path.join(files_dir, unit.path)
    text, kind = kind in RECORD_MODES, container(kind, unit.path)
    if kind == "jsonl":
        yield from json_records(path, unit, max_expansion)
        return
    if kind == "parquet":
        f = parquet_file(path)
        check_columns(path, f.schema_arrow, columns, text)
        batches = f.iter_batches(batch_size=1024, row_groups=range(unit.start, unit.stop), columns=columns)
    else:
        batches = arrow_batches(path, columns, text)
    row = unit.first
    for batch in batches:
        for record in batch.to_pylist():
            yield row, record
            row += 1


def json_records(path, unit, max_expansion):
    lineno = unit.first
    for offset, line in lines(path, unit.start, unit.stop, max_expansion):
        if offset == 0:
            line = line.removeprefix(codecs.BOM_UTF8)
        if line.strip():
            text = line.rstrip(b"\r").decode("utf-8", errors="replace")
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise BadFile(f"{path}:{lineno}: not a JSON line ({e.msg}, column {e.colno}): {text[:80]!r}") from None
            if not isinstance(record, dict):
                raise BadFile(f"{path}:{lineno}: a JSON {type(record).__name__}, not an object")
            yield lineno, record
        lineno += 1


def text_blocks(path, max_expansion=100):
    """(text, head, replaced) blocks of a text file: text decoded as UTF-8 and cut after a newline where
    there is one (so that a CRLF or a combining mark never straddles two blocks), the first block's raw
    bytes as `head` for the binary check (b"" after), and how many byte sequences decoding replaced."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry, first = "", True
    for block in blocks(path, max_expansion):
        if first:
            block = block.removeprefix(codecs.BOM_UTF8)
        text = carry + decoder.decode(block)
        replaced = text.count("\ufffd") - carry.count("\ufffd") - block.count("\ufffd".encode())
        cut = text.rfind("\n") + 1
        carry = text[cut:]
        yield text[:cut], block if first else b"", replaced
        first = False
    tail = carry + decoder.decode(b"", final=True)
    if tail:
        yield tail, b"", tail.count("\ufffd") - carry.count("\ufffd")
