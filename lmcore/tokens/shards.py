"""Token shards: documents encoded and written as `.npy`, one file per split, and read back memory-mapped."""

import collections
import contextlib
import os
import tempfile

import numpy as np

from lmcore.data.splits import SPLITS, split_of
from lmcore.io import raw_to_npy, read_json, read_jsonl, sha256_file, write_json


def _batches(iterable, n):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def shard_part(doc_path, tokenizer, fractions, out_paths, num_threads=1, batch_docs=256):
    """Encode one part's documents into one `.npy` per split; an end-of-text id follows every document.

    Memory stays flat: tokens go to a raw file per split, which is then copied into the `.npy`.
    Returns per-split statistics: documents, tokens, and UTF-8 bytes of the text.
    """
    eot = np.array([tokenizer.eot_id], dtype=tokenizer.dtype)
    stats = {s: {"documents": 0, "tokens": 0, "bytes": 0} for s in SPLITS}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out_paths["train"])) as tmp, contextlib.ExitStack() as stack:
        raw = {s: stack.enter_context(open(os.path.join(tmp, s + ".bin"), "wb")) for s in SPLITS}
        for docs in _batches(read_jsonl(doc_path), batch_docs):
            for doc, ids in zip(docs, tokenizer.encode_arrays([d["text"] for d in docs], num_threads)):
                split = split_of(doc["id"], fractions)
                raw[split].write(ids)
                raw[split].write(eot)
                stats[split]["documents"] += 1
                stats[split]["tokens"] += len(ids) + 1
                stats[split]["bytes"] += len(doc["text"].encode("utf-8"))
        for f in raw.values():
            f.close()
        for s in SPLITS:
            raw_to_npy(os.path.join(tmp, s + ".bin"), out_paths[s], tokenizer.dtype)
    return stats


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


class TokenDataset:
    """The shards of one split, memory-mapped as they are needed: random windows for training, ordered
    windows for evaluation, as int64 numpy arrays (numpy only: the shard jobs never import torch).

    Windows run across shard boundaries (documents end with the end-of-text id, so a boundary is one more
    document boundary): any number of parts serves any context. `sources` ({name: weight}, None for all)
    chooses the sources read and how often a window comes from each: with probability weight / sum of
    weights, from anywhere in that source's shards. Without weights, every source counts by its tokens,
    as if the shards were one."""

    def __init__(self, manifest_path, split, fingerprint=None, sources=None):
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

    def draw(self, rng, batch_size, context_length):
        """(stream, start) of `batch_size` random windows, from the numpy Generator `rng`."""
        if self.weights:
            total = sum(self.weights.values())
            p = [self.weights[s] / total for s in sorted(self.weights)]
            stream = rng.choice(len(self.streams), size=batch_size, p=p)
        else:
            stream = np.zeros(batch_size, dtype=np.int64)
        usable = np.array([s.total - context_length for s in self.streams])
        return stream, rng.integers(0, usable[stream])

    def source_at(self, stream, pos):
        """The source of the shard that holds token `pos` of a stream."""
        s = self.streams[stream]
        return self.sources[s.shards[int(np.searchsorted(s.starts, pos, side="right")) - 1]]

    def sample_batch(self, rng, batch_size, context_length, rows=None):
        """Random windows (x, y), y shifted by one. Every caller draws the same `batch_size` windows from
        `rng`; `rows` (a slice) reads only those rows from disk, as a DDP rank reads its share."""
        self.check_window(context_length)
        stream, start = self.draw(rng, batch_size, context_length)
        mine = range(batch_size)[rows] if rows is not None else range(batch_size)
        rows = np.stack([self.streams[stream[i]].read(self.array, start[i], context_length + 1) for i in mine])
        rows = rows.astype(np.int64)
        return rows[:, :-1], rows[:, 1:]

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
