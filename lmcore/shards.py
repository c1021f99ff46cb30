"""Token shards: documents encoded and written as `.npy`, one file per split, and read back memory-mapped."""

import contextlib
import os
import tempfile

import numpy as np

from lmcore.io import raw_to_npy, read_json, read_jsonl, sha256_file, write_json
from lmcore.splits import SPLITS, split_of


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


def split_too_small_error(split, tokens, documents, longest, parts, need, model, all_documents):
    return SplitTooSmall(
        f"the {split} split holds {tokens:,} tokens in {documents:,} of the {all_documents:,} documents that cleaning "
        "and "
        f"dedup kept (longest part: {longest:,} tokens), but "
        f"{model} needs a part of at least context_length + 1 = {need:,} tokens in every split. Add documents, raise "
        f"`splits.{split}`{', use fewer `parts`' if parts > 1 else ''} or shorten the model's context_length (what "
        "cleaning "
        f"dropped, and why, is in results/clean/<source>/part-<k>.stats.json and the clean logs)."
    )


def check_splits(parts, readers, tokenizer_name):
    """Fail before any training when a split cannot give a model one window.

    `readers`: {model: (context_length + 1, the sources it trains on, None for all)}. Training
    draws each window from one shard of one of its sources (train and validation), and evaluation
    reads the test split in windows, so every split needs a part of at least that many tokens for
    every model that reads it, and the train and validation splits one in each of its sources."""
    for split in SPLITS:
        for model, (need, sources) in sorted(readers.items(), key=lambda item: -item[1][0]):
            groups = {None: parts}
            if sources and split != "test":
                groups = {s: [p for p in parts if p["source"] == s] for s in sources}
            for source, group in groups.items():
                tokens = [p["stats"][split]["tokens"] for p in group]
                if max(tokens, default=0) < need:
                    documents = sum(p["stats"][split]["documents"] for p in group)
                    kept = sum(p["stats"][s]["documents"] for p in group for s in SPLITS)
                    who = f"model '{model}'" + (f" (source '{source}')" if source else "")
                    error = split_too_small_error(
                        split, sum(tokens), documents, max(tokens, default=0), len(group), need, who, kept
                    )
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


class TokenDataset:
    """The shards of one split, memory-mapped: random windows for training, ordered windows for
    evaluation, as int64 numpy arrays (numpy only: the shard jobs never import torch).

    `sources` ({name: weight}, None for all) chooses the sources read and how often a window comes
    from each: with probability weight / sum of weights, then from a shard in proportion to its
    usable tokens. Without weights, every source counts by its tokens, as if the shards were one."""

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
        self.sources = [p["source"] for p in parts]  # the source of each array
        self.documents = sum(p["stats"][split]["documents"] for p in parts)
        self.all_documents = sum(p["stats"][s]["documents"] for p in parts for s in SPLITS)
        self.arrays = [np.load(p, mmap_mode="r") for p in self.paths]
        for path, a in zip(self.paths, self.arrays):
            if len(a) and int(a.max()) >= self.vocab_size:
                raise ValueError(
                    f"{path}: token id {int(a.max())} is out of range for vocabulary size {self.vocab_size}"
                )
        self.num_tokens = sum(len(a) for a in self.arrays)

    def check_window(self, context_length):
        """Raise SplitTooSmall unless some shard holds one window of context_length + 1 tokens
        (with weights, some shard of every source)."""
        for source in sorted(self.weights) if self.weights else [None]:
            arrays = [a for a, s in zip(self.arrays, self.sources) if source in (None, s)]
            longest = max((len(a) for a in arrays), default=0)
            if longest < context_length + 1:
                who = "this model" + (f" (source '{source}')" if source else "")
                raise split_too_small_error(
                    self.split,
                    sum(len(a) for a in arrays),
                    self.documents,
                    longest,
                    len(arrays),
                    context_length + 1,
                    who,
                    self.all_documents,
                )

    def shard_probabilities(self, context_length):
        """The probability that a window comes from each shard."""
        usable = np.array([max(len(a) - context_length, 0) for a in self.arrays], dtype=np.float64)
        if not self.weights:
            return usable / usable.sum()
        total = sum(self.weights.values())
        of_source = {s: usable[[i for i, t in enumerate(self.sources) if t == s]].sum() for s in self.weights}
        return np.array([self.weights[s] / total * u / of_source[s] for s, u in zip(self.sources, usable)])

    def sample_batch(self, rng, batch_size, context_length):
        """Random windows (x, y), y shifted by one; positions drawn from the numpy Generator `rng`."""
        self.check_window(context_length)
        lengths = np.array([len(a) for a in self.arrays])
        shard = rng.choice(len(self.arrays), size=batch_size, p=self.shard_probabilities(context_length))
        start = rng.integers(0, np.maximum(lengths - context_length, 0)[shard])
        rows = np.stack([self.arrays[k][s : s + context_length + 1] for k, s in zip(shard, start)]).astype(np.int64)
        return rows[:, :-1], rows[:, 1:]

    def windows(self, context_length):
        """(source, x, y) with every token predicted once: non-overlapping windows in order, the
        final partial window included."""
        for source, a in zip(self.sources, self.arrays):
            for i in range(0, len(a) - 1, context_length):
                row = a[i : i + context_length + 1].astype(np.int64)
                yield source, row[:-1], row[1:]
