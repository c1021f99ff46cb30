"""Token shards: documents encoded and written as `.npy`, one file per split, and read back memory-mapped."""

import collections
import contextlib
import os
import tempfile

import numpy as np

from lmcore.data.splits import SPLITS, split_of
from lmcore.data.stats import BINS, bin_of
from lmcore.io import batches, raw_to_npy, read_json, read_jsonl, sha256_file, write_json
from lmcore.tokens.chat import IGNORE, assemble, chat_ids, loss_mask


def encode_documents(tokenizer, docs, num_threads=1):
    """The ids of each document: its text's, or a conversation's as the chat template renders it (the contents
    of every conversation of the batch encoded at once). A preference pair is its chosen conversation, an
    end-of-text id, and the same conversation with the rejected answer last: two conversations in a row."""
    chats = [d for d in docs if "messages" in d]
    contents = iter(tokenizer.encode_arrays([t for d in chats for t in encoded_texts(d)], num_threads))
    texts = iter(tokenizer.encode_arrays([d["text"] for d in docs if "messages" not in d], num_threads))
    marker = chat_ids(tokenizer) if chats else None
    for doc in docs:
        if "messages" not in doc:
            yield next(texts)
            continue
        turns = [(m["role"], m["content"]) for m in doc["messages"]]
        ids = assemble(marker, turns, [next(contents) for _ in turns])[0]
        if "rejected" in doc:
            rejected = turns[:-1] + [("assistant", doc["rejected"])]
            ids = np.concatenate(
                [ids, [tokenizer.eot_id], assemble(marker, rejected, [next(contents) for _ in rejected])[0]]
            )
        yield ids.astype(tokenizer.dtype)


def encoded_texts(doc):
    """The texts a document's tokens encode: its text, or a conversation's contents (the markers are no text); a
    preference pair's, both conversations'."""
    if "messages" not in doc:
        return [doc["text"]]
    texts = [m["content"] for m in doc["messages"]]
    return texts + texts[:-1] + [doc["rejected"]] if "rejected" in doc else texts


def shard_part(doc_path, tokenizer, fractions, out_paths, num_threads=1, batch_docs=256):
    """Encode one part's documents into one `.npy` per split; an end-of-text id follows every document.

    Memory stays flat: tokens go to a raw file per split, which is then copied into the `.npy`.
    Returns per-split statistics: documents, tokens, UTF-8 bytes of the text, conversations, and a histogram
    of tokens per document.
    """
    eot = np.array([tokenizer.eot_id], dtype=tokenizer.dtype)
    stats = {s: {"documents": 0, "tokens": 0, "bytes": 0, "conversations": 0, "pairs": 0,
                 "tokens_per_document": [0] * BINS} for s in SPLITS}  # fmt: skip
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out_paths["train"])) as tmp, contextlib.ExitStack() as stack:
        raw = {s: stack.enter_context(open(os.path.join(tmp, s + ".bin"), "wb")) for s in SPLITS}
        for docs in batches(read_jsonl(doc_path), batch_docs):
            for doc, ids in zip(docs, encode_documents(tokenizer, docs, num_threads)):
                split = split_of(doc["id"], fractions)
                raw[split].write(ids)
                raw[split].write(eot)
                stats[split]["documents"] += 1
                stats[split]["conversations"] += "messages" in doc and "rejected" not in doc
                stats[split]["pairs"] += "rejected" in doc
                stats[split]["tokens"] += len(ids) + 1
                stats[split]["tokens_per_document"][bin_of(len(ids))] += 1  # lmcore.data.stats' bins
                stats[split]["bytes"] += sum(len(t.encode("utf-8")) for t in encoded_texts(doc))
        for f in raw.values():
            f.close()
        for s in SPLITS:
            raw_to_npy(os.path.join(tmp, s + ".bin"), out_paths[s], tokenizer.dtype)
    return stats


def conversation_sources(manifest_path, split="test"):
    """The sources whose `split` holds conversations (preference pairs are not counted as such)."""
    return sorted({p["source"] for p in read_json(manifest_path)["parts"] if p["stats"][split].get("conversations")})


def pair_sources(manifest_path, split="test"):
    """The sources whose `split` holds preference pairs."""
    return sorted({p["source"] for p in read_json(manifest_path)["parts"] if p["stats"][split].get("pairs")})


class SplitTooSmall(ValueError):
    pass


def split_too_small_error(split, tokens, documents, need, model, all_documents):
    return SplitTooSmall(
        f"the {split} split holds {tokens:,} tokens in {documents:,} of the {all_documents:,} documents that cleaning "
        f"and dedup kept, but {model} needs at least context_length + 1 = {need:,} tokens in every split. Add "
        f"documents, raise `splits.{split}` or shorten the model's context_length (what cleaning dropped, and why, "
        "is in results/clean/<source>/part-<k>.stats.json and the clean logs)."
    )


def check_splits(parts, readers, tokenizer_name):
    """Fail before any training when a split cannot give a model one window.

    `readers`: {model: (context_length + 1, the sources it trains on, None for all)}. Windows run across
    the shards of a source (train, validation) or of every source, and evaluation reads each source's test
    shards as one stream, so a split needs that many tokens in all, and in each source a model weighs."""
    for split in SPLITS:
        for model, (need, sources) in sorted(readers.items(), key=lambda item: -item[1][0]):
            groups = {None: parts}
            if sources and split != "test":
                groups = {s: [p for p in parts if p["source"] == s] for s in sources}
            for source, group in groups.items():
                tokens = sum(p["stats"][split]["tokens"] for p in group)
                if tokens < need:
                    documents = sum(p["stats"][split]["documents"] for p in group)
                    kept = sum(p["stats"][s]["documents"] for p in group for s in SPLITS)
                    who = f"model '{model}'" + (f" (source '{source}')" if source else "")
                    error = split_too_small_error(split, tokens, documents, need, who, kept)
                    raise SplitTooSmall(f"tokenizer '{tokenizer_name}': {error}")


def write_manifest(out_path, tokenizer, parts, readers=None, tokenizer_name=None):
    """`parts`: list of {name, source, stats, shards: {split: path}}. Records tokens per split and part, and checksums.
    With `readers` ({model: (context_length + 1, sources)}), first checks that every split can serve every model.

    Shard paths are relative to the manifest's folder, so `results/` can be moved or mounted elsewhere."""
    if readers:
        check_splits(parts, readers, tokenizer_name)
    folder = os.path.dirname(os.path.abspath(out_path))
    totals = {s: sum(p["stats"][s]["tokens"] for p in parts) for s in SPLITS}
    manifest = {
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        "dtype": np.dtype(tokenizer.dtype).name,
        "tokens": totals,
        "parts": [
            {
                "name": p["name"],
                "source": p["source"],
                "stats": p["stats"],
                "shards": {
                    s: {"path": os.path.relpath(os.path.abspath(path), folder), "sha256": sha256_file(path)}
                    for s, path in p["shards"].items()
                },
            }
            for p in parts
        ],
    }
    write_json(out_path, manifest)
    return manifest


CHUNK_TOKENS = 1 << 24  # tokens scanned at once for conversation starts
OPEN_SHARDS = 64  # memory maps held at once: a few thousand parts never hold a few thousand files open


class Stream:
    """Shards read one after another as one array of tokens: windows run across their boundaries."""

    def __init__(self, shards, lengths):
        self.shards = shards  # indices into the dataset's shards
        self.starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.total = int(self.starts[-1])

    def read(self, array, pos, n):
        """Tokens [pos, pos + n) of the stream (fewer at its end); `array(k)` opens shard k."""
        k = int(np.searchsorted(self.starts, pos, side="right")) - 1
        pieces = []
        while n > 0 and k < len(self.shards):
            piece = array(self.shards[k])[pos - self.starts[k] : pos - self.starts[k] + n]
            pieces.append(piece)
            n, pos, k = n - len(piece), pos + len(piece), k + 1
        return np.concatenate(pieces) if len(pieces) != 1 else np.asarray(pieces[0])


def stream_windows(stream, array, context_length):
    """(x, y) with every token of the stream but its first predicted once: non-overlapping windows in
    order, the final partial window included."""
    for i in range(0, stream.total - 1, context_length):
        row = stream.read(array, i, context_length + 1).astype(np.int64)
        yield row[:-1], row[1:]


def answer_rows(rows, length, eot_id, marker):
    """(x, y, segments) of rows of ids that start at a conversation's start, each padded with end-of-text
    ids to `length`: targets IGNORE but on answers (lmcore.tokens.chat.loss_mask), and each position's
    conversation, counted from 0 in its row (an end-of-text id closes its conversation)."""
    ids = np.full((len(rows), length), eot_id, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    x, y = ids[:, :-1], np.where(loss_mask(ids, marker)[:, 1:], ids[:, 1:], IGNORE)
    eot = x == eot_id
    return x, y, np.cumsum(eot, axis=1) - eot


class TokenDataset:
    """The shards of one split, memory-mapped as they are needed: random windows for training, ordered
    windows for evaluation, as int64 numpy arrays (numpy only: the shard jobs never import torch).

    Windows run across shard boundaries (documents end with the end-of-text id, so a boundary is one more
    document boundary): any number of parts serves any context. `sources` ({name: weight}, None for all)
    chooses the sources read and how often a window comes from each: with probability weight / sum of
    weights, from anywhere in that source's shards. Without weights, every source counts by its tokens,
    as if the shards were one.

    `answers` ({chat marker: id}, lmcore.tokens.chat.chat_ids) reads conversations for SFT instead: each
    window starts at a conversation's start, drawn uniformly among the split's conversations, holds the
    conversations that follow it, and comes with its segments (a conversation's number at each position,
    so that attention and positions restart at each) and targets IGNORE but on the answers' tokens."""

    def __init__(self, manifest_path, split, fingerprint=None, sources=None, answers=None):
        manifest = read_json(manifest_path)
        if fingerprint is not None and manifest["tokenizer_fingerprint"] != fingerprint:
            raise ValueError(
                f"{manifest_path}: shards were built with tokenizer {manifest['tokenizer_fingerprint'][:12]}, "
                f"but the tokenizer in use is {fingerprint[:12]}; rebuild the shards"
            )
        known = sorted({p["source"] for p in manifest["parts"]})
        unknown = sorted(set(sources or ()) - set(known))
        if unknown:
            raise ValueError(f"{manifest_path}: no shards of source(s) {unknown}; its sources are {known}")
        parts = [p for p in manifest["parts"] if sources is None or p["source"] in sources]
        self.split = split
        self.weights = sources
        self.vocab_size = manifest["vocab_size"]
        self.eot_id = manifest["eot_id"]
        folder = os.path.dirname(os.path.abspath(manifest_path))
        self.paths = [os.path.join(folder, p["shards"][split]["path"]) for p in parts]
        self.sources = [p["source"] for p in parts]  # the source of each shard
        self.lengths = [p["stats"][split]["tokens"] for p in parts]
        self.documents = sum(p["stats"][split]["documents"] for p in parts)
        self.all_documents = sum(p["stats"][s]["documents"] for p in parts for s in SPLITS)
        self.num_tokens = sum(self.lengths)
        self.by_source = {
            s: Stream(
                [k for k, t in enumerate(self.sources) if t == s],
                [n for n, t in zip(self.lengths, self.sources) if t == s],
            )
            for s in sorted(set(self.sources))
        }
        # what windows are drawn from: each weighted source, or every shard as one stream
        self.streams = (
            [self.by_source[s] for s in sorted(sources)] if sources else [Stream(range(len(parts)), self.lengths)]
        )
        self._open, self._checked = collections.OrderedDict(), set()
        self.answers, self._starts = answers, {}

    def array(self, k):
        """Shard k, memory-mapped (the least recently used of OPEN_SHARDS closed); on first use its length is
        checked against the manifest and its ids against the vocabulary."""
        if k in self._open:
            self._open.move_to_end(k)
            return self._open[k]
        a = np.load(self.paths[k], mmap_mode="r")
        if k not in self._checked:
            if len(a) != self.lengths[k]:
                raise ValueError(
                    f"{self.paths[k]}: {len(a):,} tokens, but the manifest says {self.lengths[k]:,}; rebuild the shards"
                )
            if len(a) and int(a.max()) >= self.vocab_size:
                raise ValueError(
                    f"{self.paths[k]}: token id {int(a.max())} is out of range for vocabulary size {self.vocab_size}"
                )
            self._checked.add(k)
        self._open[k] = a
        if len(self._open) > OPEN_SHARDS:
            self._open.popitem(last=False)
        return a

    def check_window(self, context_length):
        """Raise SplitTooSmall unless the split holds one window of context_length + 1 tokens
        (with weights, every weighted source)."""
        for source, stream in zip(sorted(self.weights) if self.weights else [None], self.streams):
            if stream.total < context_length + 1:
                who = "this model" + (f" (source '{source}')" if source else "")
                raise split_too_small_error(
                    self.split, stream.total, self.documents, context_length + 1, who, self.all_documents
                )

    def conversation_starts(self, stream):
        """Where each conversation starts in a stream (int64): after every end-of-text id but a shard's last.
        Found by one pass over the stream's shards, a chunk at a time, and kept: 8 bytes per conversation."""
        if stream not in self._starts:
            found = []
            for k, first in zip(stream.shards, stream.starts):
                a = self.array(k)
                found.append(np.array([first] if len(a) else [], dtype=np.int64))
                for at in range(0, len(a), CHUNK_TOKENS):
                    ends = np.flatnonzero(a[at : at + CHUNK_TOKENS] == self.eot_id) + at + 1
                    found.append(first + ends[ends < len(a)])
            self._starts[stream] = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
            if not len(self._starts[stream]):
                raise ValueError(f"the {self.split} split of a source this model reads holds no conversation")
        return self._starts[stream]

    def draw_streams(self, rng, batch_size):
        """The stream of each of `batch_size` windows: one of `streams`, by the sources' weights."""
        if not self.weights:
            return np.zeros(batch_size, dtype=np.int64)
        total = sum(self.weights.values())
        return rng.choice(len(self.streams), size=batch_size, p=[self.weights[s] / total for s in sorted(self.weights)])

    def draw(self, rng, batch_size, context_length):
        """(stream, start) of `batch_size` random windows, from the numpy Generator `rng`."""
        stream = self.draw_streams(rng, batch_size)
        usable = np.array([s.total - context_length for s in self.streams])
        return stream, rng.integers(0, usable[stream])

    def source_at(self, stream, pos):
        """The source of the shard that holds token `pos` of a stream."""
        s = self.streams[stream]
        return self.sources[s.shards[int(np.searchsorted(s.starts, pos, side="right")) - 1]]

    def sample_batch(self, rng, batch_size, context_length, rows=None):
        """Random windows (x, y), y shifted by one (with `answers`, (x, y, segments)). Every caller draws the
        same `batch_size` windows from `rng`; `rows` (a slice) reads only those rows from disk, as a DDP rank
        reads its share."""
        if self.answers:
            return self.sample_conversations(rng, batch_size, context_length, rows)
        self.check_window(context_length)
        stream, start = self.draw(rng, batch_size, context_length)
        mine = range(batch_size)[rows] if rows is not None else range(batch_size)
        rows = np.stack([self.streams[stream[i]].read(self.array, start[i], context_length + 1) for i in mine])
        rows = rows.astype(np.int64)
        return rows[:, :-1], rows[:, 1:]

    def sample_conversations(self, rng, batch_size, context_length, rows=None):
        starts = [self.conversation_starts(s) for s in self.streams]
        stream = self.draw_streams(rng, batch_size)
        pick = rng.integers(0, [len(starts[s]) for s in stream])
        mine = range(batch_size)[rows] if rows is not None else range(batch_size)
        read = [self.streams[stream[i]].read(self.array, starts[stream[i]][pick[i]], context_length + 1) for i in mine]
        return answer_rows(read, context_length + 1, self.eot_id, self.answers)

    def answer_windows(self, context_length):
        """(source, x, y, segments) that score every answer token of a split once, with its whole conversation
        before it: each source's conversations in order, as many whole ones per window as fit (a conversation
        longer than the window is scored on its first context_length + 1 tokens, its rest not at all)."""
        for source, stream in self.by_source.items():
            starts = self.conversation_starts(stream)
            ends = np.append(starts[1:], stream.total)
            i = 0
            while i < len(starts):
                j = max(int(np.searchsorted(ends, starts[i] + context_length + 1, side="right")), i + 1)
                length = min(int(ends[j - 1] - starts[i]), context_length + 1)
                x, y, segments = answer_rows(
                    [stream.read(self.array, starts[i], length)], length, self.eot_id, self.answers
                )
                yield source, x[0], y[0], segments[0]
                i = j

    def windows(self, context_length):
        """(source, x, y) with every token predicted once but each source's first: each source's shards
        read as one stream in non-overlapping windows, the final partial window included."""
        for source, stream in self.by_source.items():
            for x, y in stream_windows(stream, self.array, context_length):
                yield source, x, y

    def shards(self):
        """(source, tokens, first of its source) of every shard, one open at a time."""
        for source, stream in self.by_source.items():
            for i, k in enumerate(stream.shards):
                yield source, self.array(k), i == 0
