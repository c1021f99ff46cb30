"""Turn a source's raw files into JSON Lines documents, spread over parts by a stable hash of the id.

Ingest runs as `parts` jobs (readers); reader k reads its share of the source's units
(lmcore.data.formats) and writes `reader-k/part-j.jsonl` for every part j, so that each
part still holds the documents whose id hashes to it, and clean job j reads part j of every
reader. Ids are stable across runs and do not depend on the number of parts: the corpus's
own id when the source names an id field (`<source>/<id>`), else `<source>/<path inside the
source>`, with `#<line>` (JSON Lines, 1-based), `#<row>` (parquet, arrow, 0-based) or
`#<piece>` (split, dialogue) appended when a file holds several documents.

A conversation is a document with `messages` ([{role, content}, ...], each content normalised) beside
its `text` (the contents one after another, lmcore.tokens.chat.text_of), which the data stages read.
"""

import contextlib
import json
import lzma
import os
import zlib

import zstandard

from lmcore.data.dialogue import SCENE, Dialogue, with_rejected
from lmcore.data.formats import (
    BY_SUFFIX,
    CONVERSATION_MODES,
    DATASETS_METADATA,
    RECORD_MODES,
    BadFile,
    mode_of,
    records,
    share,
    text_blocks,
    units_of,
)
from lmcore.data.text import normalize
from lmcore.data.web import EXTRACTORS, decode, extract, warc_pages
from lmcore.io import atomic_open, read_jsonl, stable_hash
from lmcore.tokens.chat import BadConversation, check_conversation, check_pair, text_of

# What a damaged or misnamed compressed or columnar file raises while it is read (pyarrow's errors are
# ValueErrors and OSErrors).
DAMAGED = (EOFError, OSError, ValueError, zlib.error, lzma.LZMAError, zstandard.ZstdError)

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
    b"PAR1",
    b"\x28\xb5\x2f\xfd",
)


def is_binary(data):
    """A file whose start is a known binary signature, or more than 10% control bytes, is not text."""
    head = data[:8192]
    if head.startswith(BINARY_MAGIC):
        return True
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and control / len(head) > 0.10


def condition_names(where):
    """The name of each condition of a `where` mapping, as stats and the report count them."""
    return {
        (field, op): f"{field} {OPS[op][0]} {json.dumps(value)}"
        for field, c in where.items()
        for op, value in c.items()
    }


OPS = {
    "min": (">=", lambda v, x: v >= x),
    "max": ("<=", lambda v, x: v <= x),
    "in": ("in", lambda v, x: v in x),
    "not_in": ("not in", lambda v, x: v not in x),
}


def failed_condition(record, where, where_at):
    """The first (field, op) of `where` that `record` fails, or None. A missing or null field fails
    min, max and in; a number compared with text raises BadFile naming `where_at`."""
    for field, conditions in where.items():
        value = record.get(field)
        for op, x in conditions.items():
            if value is None:
                if op != "not_in":
                    return field, op
                continue
            try:
                if not OPS[op][1](value, x):
                    return field, op
            except TypeError:
                raise BadFile(f"{where_at}: where {field} {OPS[op][0]} {x!r}: the value is {value!r}") from None
    return None


class Reader:
    """One ingest job's statistics and part files."""

    def __init__(self, source_name, source, parts):
        self.name, self.source, self.parts = source_name, source, parts
        self.kind, self.field = mode_of(source["documents"])
        self.where = source.get("where") or {}
        self.names = condition_names(self.where)
        self.stats = {
            "source": source_name,
            "files": 0,
            "documents": 0,
            "characters": 0,
            "skipped": {},
            "replaced_bytes": {},
            "control_characters": {},
            "dropped": {},
            "dropped_characters": {},
            "records": {},  # WARC records that are no response (warcinfo, request, metadata)
        }

    def write(self, doc_id, text, meta, messages=None, rejected=None):
        record = {"id": doc_id, "text": text, "meta": {"source": self.name, **meta}}
        if messages is not None:
            record["messages"] = messages
        if rejected is not None:  # a preference pair: the last assistant message is the chosen answer
            record["rejected"] = rejected
        self.parts[stable_hash(doc_id) % len(self.parts)].write(
            json.dumps(record, ensure_ascii=False, sort_keys=True, default=str) + "\n"
        )
        self.stats["documents"] += 1
        self.stats["characters"] += len(text)

    def count(self, table, path, n):
        if n:
            self.stats[table][path] = self.stats[table].get(path, 0) + n

    def drop(self, reason, chars):
        self.count("dropped", reason, 1)
        self.count("dropped_characters", reason, chars)

    def normalized_blocks(self, files_dir, unit, max_expansion):
        """A text file's blocks (lmcore.data.formats.text_blocks), normalised, with what decoding replaced
        and normalising removed counted; none of a binary file, which is counted as skipped."""
        for text, head, replaced in text_blocks(os.path.join(files_dir, unit.path), max_expansion):
            if head and is_binary(head):
                self.stats["skipped"][unit.path] = "binary"
                return
            self.count("replaced_bytes", unit.path, replaced)
            text, controls = normalize(text)
            self.count("control_characters", unit.path, controls)
            yield text

    def read_text(self, files_dir, unit, max_expansion):
        """`file` and `split` modes: one document per file, or per piece between delimiters."""
        base = f"{self.name}/{unit.path}"
        texts, index, carry = [], 0, ""
        for text in self.normalized_blocks(files_dir, unit, max_expansion):
            if self.kind == "file":
                texts.append(text)
                continue
            pieces = (carry + text).split(self.field)
            carry = pieces.pop()
            for piece in pieces:
                if piece.strip():
                    self.write(f"{base}#{index}", piece.strip("\n"), {"path": unit.path})
                    index += 1
        if unit.path in self.stats["skipped"]:
            return
        if self.kind == "file":
            self.write(base, "".join(texts), {"path": unit.path})
        elif carry.strip():
            self.write(f"{base}#{index}", carry.strip("\n"), {"path": unit.path})

    def read_dialogue(self, files_dir, unit, max_expansion):
        """`dialogue` mode: a play's conversations (lmcore.data.dialogue), a document each."""
        documents, base = self.source["documents"], f"{self.name}/{unit.path}"
        dialogue, index = Dialogue(documents["dialogue"], documents.get("scene") or SCENE), 0

        def conversations():  # (scene, messages)
            for text in self.normalized_blocks(files_dir, unit, max_expansion):
                for line in text.removesuffix("\n").split("\n"):  # a block ends after a newline, but the last
                    yield from ((dialogue.scenes, m) for m in dialogue.feed(line))
            if unit.path not in self.stats["skipped"]:
                yield from ((dialogue.scenes, m) for m in dialogue.finish())

        if documents.get("rejected"):  # other_scene: preference pairs
            for messages, rejected in with_rejected(conversations()):
                self.write_conversation(f"{base}#{index}", messages, {"path": unit.path}, rejected)
                index += 1
            return
        for _, messages in conversations():
            self.write_conversation(f"{base}#{index}", messages, {"path": unit.path})
            index += 1

    def page_text(self, html):
        """A page's main text, normalised; None (counted) where the extractor finds none."""
        text = normalize(extract(html, self.source.get("extractor", EXTRACTORS[0])))[0]  # tests give no defaults
        if not text.strip():
            self.drop("no text extracted", 0)
            return None
        return text

    def read_warc(self, files_dir, unit, max_expansion):
        """`warc` mode: a document per page (a response record of status 200 and an HTML type), named by its
        WARC-Record-ID, its URL and date in meta; the other records counted by why they are none."""
        for position, page in warc_pages(os.path.join(files_dir, unit.path), max_expansion):
            if isinstance(page, str) and page.endswith(" record"):  # no response: not a page dropped
                self.count("records", page, 1)
            elif isinstance(page, str):
                self.drop(page, 0)
            elif (text := self.page_text(page["html"])) is not None:
                own = page["record_id"] or f"{unit.path}#{position}"
                meta = {"path": unit.path, "url": page["url"], "date": page["date"]}
                self.write(f"{self.name}/{own}", text, meta)

    def write_conversation(self, doc_id, messages, meta, rejected=None):
        """A conversation's document (with `rejected`, a preference pair's), or a skip counted by what is wrong."""
        try:
            turns = check_conversation(messages)
            if rejected is not None:
                rejected = check_pair(turns, rejected)
        except BadConversation as e:
            self.drop(f"not a {'preference pair' if rejected is not None else 'conversation'}: {e.reason}", 0)
            return
        messages = [{"role": role, "content": normalize(content)[0]} for role, content in turns]
        text = text_of((m["role"], m["content"]) for m in messages)
        if rejected is not None:
            rejected = normalize(rejected)[0]
            text += "\n" + rejected
        self.write(doc_id, text, meta, messages, rejected)

    def read_records(self, files_dir, unit, max_expansion):
        """JSON Lines, parquet and arrow: a document per record; text (or conversation), id and meta fields
        as the source names them."""
        documents = self.source["documents"]
        id_field, meta_fields = documents.get("id"), documents.get("meta") or []
        body = {
            "prompt": [documents.get("prompt"), documents.get("response")],
            "chosen": [documents.get("prompt"), documents.get("chosen"), documents.get("rejected")],
        }.get(self.kind, [self.field])
        body = [f for f in body if f]
        system = [documents["system"]] if documents.get("system") else []  # a record may leave it out
        columns = list(dict.fromkeys([*body, *system, *([id_field] if id_field else []), *meta_fields, *self.where]))
        for position, record in records(files_dir, unit, self.kind, columns, max_expansion):
            at = f"{self.name}/{unit.path}#{position}"
            missing = next((f for f in body if f not in record), None)
            if missing:  # a JSON line without it: likely the wrong field name, not a gap
                raise BadFile(f"{unit.path}:{position}: no field {missing!r} in this line (keys {sorted(record)[:10]})")
            text = messages = rejected = None
            if self.kind == "chosen":
                try:
                    messages, rejected = preference(record, documents)
                except BadConversation as e:
                    self.drop(f"not a preference pair: {e.reason}", 0)
                    continue
            elif self.kind in CONVERSATION_MODES:
                messages = record[self.field] if self.kind == "chat" else pair(record, documents)
            else:
                text = record[self.field]
                if self.kind == "html" and isinstance(text, (str, bytes)):
                    text = self.page_text(decode(text))
                    if text is None:
                        continue
                if isinstance(text, str):
                    text = normalize(text)[0]  # escapes in JSON hid \r and controls
                elif text is None:
                    self.drop(f"{self.field} is null", 0)
                    continue
                else:
                    raise BadFile(
                        f"{at}: field {self.field!r} holds a {type(text).__name__}, not text: {str(text)[:80]!r}"
                    )
            failed = failed_condition(record, self.where, at)
            if failed:
                self.drop(f"where {self.names[failed]}", len(text or ""))
                continue
            own = record.get(id_field) if id_field else None
            meta = {"path": unit.path, **{f: record.get(f) for f in meta_fields}}
            doc_id = f"{self.name}/{own}" if own is not None else at
            if messages is None:
                self.write(doc_id, text, meta)
            else:
                self.write_conversation(doc_id, messages, meta, rejected)


def preference(record, documents):
    """(the chosen conversation, the rejected answer's text) of a preference record: `{prompt, chosen, rejected}`
    text fields (a one-turn exchange), or `{chosen, rejected}` fields holding conversations (TRL's conversational
    form) that differ in their last message only. The rejected answer is checked with the chosen conversation."""
    chosen, rejected = record[documents["chosen"]], record[documents["rejected"]]
    if documents.get("prompt"):
        return pair({**record, "_response": chosen}, {**documents, "response": "_response"}), rejected
    if isinstance(chosen, list) and isinstance(rejected, list) and rejected:
        if chosen[:-1] != rejected[:-1]:
            raise BadConversation("conversations that differ before their last message", "the chosen and rejected "
                                  "conversations differ before their last message")  # fmt: skip
        return chosen, rejected[-1].get("content") if isinstance(rejected[-1], dict) else rejected[-1]
    return chosen, rejected


def pair(record, documents):
    """The conversation of a one-turn record: its prompt and response fields, after its system field's text
    where it has one."""
    text = record.get(documents["system"]) if documents.get("system") else None
    system = [{"role": "system", "content": text}] if text else []
    return [
        *system,
        {"role": "user", "content": record[documents["prompt"]]},
        {"role": "assistant", "content": record[documents["response"]]},
    ]


def ingest(source_name, files_dir, manifest, source, reader, readers, part_paths):
    """Write reader `reader`'s share of a downloaded source's documents to `part_paths`; return statistics."""
    kind, _ = mode_of(source["documents"])
    units = [u for entry in manifest["files"] if wanted(entry["path"], kind) for u in units_of(files_dir, entry, kind)]
    with contextlib.ExitStack() as stack:
        job = Reader(source_name, source, [stack.enter_context(atomic_open(p)) for p in part_paths])
        for unit in share(units, reader, readers):
            if unit.start == 0:
                job.stats["files"] += 1
            special = {"dialogue": job.read_dialogue, "warc": job.read_warc}
            records_of = kind in RECORD_MODES or kind in BY_SUFFIX
            read = special.get(kind) or (job.read_records if records_of else job.read_text)
            try:
                read(files_dir, unit, source.get("max_expansion", 100))
            except BadFile as e:
                raise BadFile(f"source {source_name!r}: {e}") from None
            except DAMAGED as e:
                if isinstance(e, OSError) and e.errno is not None:
                    raise  # the machine's trouble (disk, permissions), not the file's
                raise BadFile(
                    f"source {source_name!r}: {unit.path}: not a readable {kind} file ({type(e).__name__}: {e})"
                ) from None
    return job.stats


def wanted(path, kind):
    """Whether a file holds documents: all do, but the metadata files beside `datasets`' arrow files."""
    return not (kind == "arrow" and os.path.basename(path) in DATASETS_METADATA)


def merge_stats(source_name, readers, source_files):
    """One source's statistics from its readers'; a source that yielded no document is an error."""
    total = {"source": source_name}
    for stats in readers:
        for key, value in stats.items():
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                merged = total.setdefault(key, {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v if isinstance(v, int) else v
    if total.get("documents", 0) == 0:
        raise ValueError(
            f"source {source_name!r} yielded no documents ({source_files} files, skipped: {total.get('skipped')}, "
            f"dropped: {total.get('dropped')})"
        )
    return total


def skipped_files(stats, shown=5):
    """What a person should hear of the files a source's ingest skipped (all are in stats.json and the report)."""
    skipped = stats["skipped"]
    names = ", ".join(f"{path} ({why})" for path, why in sorted(skipped.items())[:shown])
    more = f" and {len(skipped) - shown:,} more" if len(skipped) > shown else ""
    files = f"{len(skipped):,} file{'s' if len(skipped) != 1 else ''}"
    return f"source {stats['source']!r}: {files} skipped, not read as text: {names}{more}"


def read_part(paths, unique_ids=False):
    """The documents of one part, from every reader's file in turn. With `unique_ids` (a source that names
    its id field), an id seen before in the part gets `~2`, `~3`...: a repeated id always lands in the same part."""
    seen = {}
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        for doc in read_jsonl(path):
            if unique_ids:
                n = seen[doc["id"]] = seen.get(doc["id"], 0) + 1
                if n > 1:
                    doc["id"] = f"{doc['id']}~{n}"
            yield doc
