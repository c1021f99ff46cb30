"""Benchmark decontamination: training documents that share a long word n-gram with a task's evaluation data.

An n-gram (13 words by default: GPT-3's and lm-eval's decontamination) of the normalised words (lowercase,
digits folded, no punctuation: dedup's) is hashed to 64 bits. Each checkable task gives the set of its
evaluation data's n-grams, held in memory (bounded by the evaluation data, not the corpus): next_line's are
its test documents' (its questions are drawn from them, so the set covers every question), a task YAML of
the user's gives those of the local data files it names (every text field of every record); a task lm-eval
ships reads its data from the Hub, which a run without internet cannot, and is said to be unchecked. Each
part's train-split documents are then streamed and tested against every set: `report` counts them per task
(the report shows the count beside the task's score), `drop` also leaves them out of the shards.
"""

import json
import os

import numpy as np
import yaml

from lmcore.data.dedup import dedup_words
from lmcore.data.splits import documents_in_split, split_of
from lmcore.data.text import WordHasher, ngram_hashes
from lmcore.evaluation.harness import NEXT_LINE, TASK_FILE
from lmcore.io import atomic_open, read_jsonl

EXAMPLES = 5
_hash_words = WordHasher()


class TaskLoader(yaml.SafeLoader):
    """A task YAML as data: lm-eval's tags (`!function utils.process_docs`) read as nothing."""


TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def read_task(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=TaskLoader) or {}


def text_ngrams(text, n):
    """The distinct hashes of a text's word n-grams (uint64)."""
    found = [ngram_hashes(_hash_words(words), n) for words in dedup_words(text) if len(words) >= n]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)


def task_name(task):
    """The name lm-eval reports a configured task under: next_line, a built-in's name, a YAML's `task:`."""
    return read_task(task).get("task", os.path.basename(task)) if task.endswith(TASK_FILE) else task


def task_data_files(task):
    """The local data files a task YAML names (`dataset_kwargs.data_files`, relative to the YAML's folder or
    to where the workflow runs), or None for a task without any (a task of lm-eval's own)."""
    if not task.endswith(TASK_FILE):
        return None
    files = (read_task(task).get("dataset_kwargs") or {}).get("data_files")
    if not files:
        return None
    names = files.values() if isinstance(files, dict) else [files] if isinstance(files, str) else files
    names = [n for v in names for n in ([v] if isinstance(v, str) else v)]
    return [n if os.path.exists(n) else os.path.join(os.path.dirname(task), n) for n in names]


def record_texts(path):
    """Every text value of every record of a JSON Lines (or JSON list) file."""

    def texts(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from texts(v)
        elif isinstance(value, list):
            for v in value:
                yield from texts(v)

    with open(path, encoding="utf-8") as f:
        head = f.read(1)
        f.seek(0)
        records = json.load(f) if head == "[" else (json.loads(line) for line in f if line.strip())
        for record in records:
            yield " ".join(texts(record))


def write_eval_ngrams(tasks, parts, fractions, n, out_path):
    """An .npz of each checkable task's n-gram hashes, sorted; returns {task name: n-grams, or None: unchecked}."""
    arrays, checked = {}, {}
    for task in tasks:
        name = task_name(task)
        if task == NEXT_LINE:
            texts = (doc["text"] for doc in documents_in_split(parts, "test", fractions))
        else:
            files = task_data_files(task)
            texts = (t for path in files for t in record_texts(path)) if files else None
        if texts is None:
            checked[name] = None
            continue
        found = [text_ngrams(t, n) for t in texts]
        arrays[name] = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)
        checked[name] = len(arrays[name])
    with atomic_open(out_path, "wb") as f:
        np.savez(f, **{f"task{i}": arrays[t] for i, t in enumerate(arrays)}, names=np.array(list(arrays)))
    return checked


def decontaminate_part(in_path, ngrams_path, fractions, n, action, out_docs):
    """Count (and with `drop` leave out) the part's train-split documents that share an n-gram with a task's
    evaluation data; return {task: {documents, examples}}. With `report` the part is linked, not copied."""
    with np.load(ngrams_path) as f:
        sets = {str(name): f[f"task{i}"] for i, name in enumerate(f["names"])}
    stats = {task: {"documents": 0, "examples": []} for task in sets}

    def overlapping(doc):
        if split_of(doc["id"], fractions) != "train":
            return []
        grams = text_ngrams(doc["text"], n)
        hits = [t for t, s in sets.items() if len(s) and np.isin(grams, s, assume_unique=True).any()]
        for task in hits:
            stats[task]["documents"] += 1
            if len(stats[task]["examples"]) < EXAMPLES:
                stats[task]["examples"].append(doc["id"])
        return hits

    if action == "drop":
        with atomic_open(out_docs) as f:
            for doc in read_jsonl(in_path):
                if not overlapping(doc):
                    f.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")
        return stats
    for doc in read_jsonl(in_path):
        overlapping(doc)
    link(in_path, out_docs)
    return stats


def link(source, target):
    """`target` as a hard link to `source` (the same bytes, no copy), or a copy across file systems."""
    import shutil

    tmp = f"{target}.tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def contamination_table(part_stats, checked):
    """{task: {documents, examples, checked}} over every part; `checked` is write_eval_ngrams' answer."""
    total = {task: {"documents": 0, "examples": [], "ngrams": count} for task, count in checked.items()}
    for stats in part_stats:
        for task, s in stats.items():
            total[task]["documents"] += s["documents"]
            total[task]["examples"] = (total[task]["examples"] + s["examples"])[:EXAMPLES]
    return total
