"""Paragraph-level exact dedup (lmcore.data.paragraphs): each repeated paragraph kept once, in a stable order
of documents, the same whatever the number of parts and key ranges; a document of repeats dropped."""

import json

from lmcore.data.dedup import apply_clusters
from lmcore.data.paragraphs import ParagraphEdit, duplicate_paragraphs, paragraph_hashes
from lmcore.io import read_jsonl, stable_hash, write_jsonl

BOILERPLATE = ["Share this article on social media", "Subscribe to our newsletter for more"]


def corpus():
    docs = []
    for i in range(12):
        own = [f"Paragraph {j} of story {i}, which nobody else wrote in these exact words." for j in range(4)]
        docs.append({"id": f"s/{i}", "text": "\n".join(own[:2] + BOILERPLATE + own[2:]), "meta": {}})
    docs.append({"id": "s/copy", "text": "\n".join(BOILERPLATE + ["A line of its own."]), "meta": {}})
    docs.append({"id": "s/chat", "text": BOILERPLATE[0], "meta": {}, "messages": [{"role": "user", "content": "x"}]})
    return docs


def run(tmp_path, docs, parts, key_ranges, removed=()):
    """The three steps as the workflow runs them; (kept documents by id, the edits' stats)."""
    (tmp_path / "clusters.json").write_text(json.dumps({"removed": list(removed)}))
    paths, hashes = [], []
    for k in range(parts):
        paths.append(tmp_path / f"part-{k}.jsonl")
        write_jsonl(paths[-1], [d for i, d in enumerate(docs) if i % parts == k])
        hashes.append(tmp_path / f"hashes-{k}.npy")
        paragraph_hashes(paths[-1], tmp_path / "clusters.json", hashes[-1], min_chars=1)
    repeats = [tmp_path / f"repeats-{r}.npy" for r in range(key_ranges)]
    for r, path in enumerate(repeats):
        duplicate_paragraphs(hashes, path, r, key_ranges)
    kept, stats = {}, []
    for k, path in enumerate(paths):
        edit = ParagraphEdit(repeats, k, max_share=0.5)
        apply_clusters(path, tmp_path / "clusters.json", tmp_path / f"out-{k}.jsonl", edit)
        kept.update({d["id"]: d for d in read_jsonl(tmp_path / f"out-{k}.jsonl")})
        stats.append(edit.stats)
    return kept, {key: sum(s[key] for s in stats) for key in stats[0]}


def test_each_repeated_paragraph_is_kept_once_in_the_first_document_by_key(tmp_path):
    docs = corpus()
    kept, stats = run(tmp_path, docs, parts=3, key_ranges=2)
    first = min((d for d in docs if "messages" not in d), key=lambda d: stable_hash(d["id"]))["id"]
    for line in BOILERPLATE:
        holders = [i for i, d in kept.items() if line in d["text"].split("\n") and i != "s/chat"]
        assert holders == [first]  # and the conversation is left as it is
    assert "s/chat" in kept
    assert all(f"Paragraph {j} of story {i}," in kept[f"s/{i}"]["text"] for i in range(12) for j in range(4))
    if first != "s/copy":  # the copy is mostly the boilerplate: dropped
        assert "s/copy" not in kept and stats["documents_dropped"] == 1 and stats["paragraphs_removed"] == 2 * 11
    else:
        assert stats["documents_dropped"] == 0 and stats["paragraphs_removed"] == 2 * 12


def test_the_result_does_not_depend_on_the_parts_or_key_ranges(tmp_path):
    docs = corpus()
    results = []
    for parts, key_ranges in ((1, 1), (2, 3), (4, 2)):
        (tmp_path / f"{parts}-{key_ranges}").mkdir()
        results.append(run(tmp_path / f"{parts}-{key_ranges}", docs, parts, key_ranges))
    assert all(r == results[0] for r in results)


def test_the_documents_minhash_removed_neither_keep_a_paragraph_nor_lose_one(tmp_path):
    docs = corpus()
    first = min((d for d in docs if "messages" not in d), key=lambda d: stable_hash(d["id"]))["id"]
    kept, _ = run(tmp_path, docs, parts=2, key_ranges=1, removed=[first])
    survivors = [i for i, d in kept.items() if BOILERPLATE[0] in d["text"].split("\n") and i != "s/chat"]
    assert len(survivors) == 1 and first not in kept  # the next document in key order keeps it
