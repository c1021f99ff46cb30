"""Exact and MinHash dedup across parts (lmcore.data.dedup), and the splits by a hash of each id."""

import hashlib
import json
import random
import unicodedata

import numpy as np

import lmcore.data.text as text_module
from helpers import WORDS
from lmcore.data import dedup
from lmcore.data.splits import split_of
from lmcore.io import read_jsonl, stable_hash, write_jsonl

DEDUP = {
    "exact": True,
    "near": True,
    "ngram": 5,
    "bands": 10,
    "rows": 10,
    "threshold": 0.8,
    "seed": 0,
    "band_groups": 1,
    "key_ranges": 1,
}


def run_dedup(tmp_path, parts, **jobs):
    """Signatures per part, candidate pairs per band group and key range, clusters over all, as the workflow
    runs them; returns (stats, clusters file, part paths)."""
    cfg = {**DEDUP, **jobs}
    paths = []
    for k, docs in enumerate(parts):
        write_jsonl(tmp_path / f"p{k}.jsonl", docs)
        dedup.signatures(
            tmp_path / f"p{k}.jsonl", tmp_path / f"p{k}.json", tmp_path / f"p{k}.npy", tmp_path / f"p{k}.bands.npy", cfg
        )
        paths.append(tmp_path / f"p{k}.jsonl")
    npy = [tmp_path / f"p{k}.npy" for k in range(len(parts))]
    pairs = []
    for g in range(cfg["band_groups"]):
        for r in range(cfg["key_ranges"]):
            pairs.append(tmp_path / f"pairs-{g}-{r}.npy")
            dedup.candidate_pairs([tmp_path / f"p{k}.bands.npy" for k in range(len(parts))], npy, pairs[-1], g, r, cfg)
    json_paths = [tmp_path / f"p{k}.json" for k in range(len(parts))]
    stats = dedup.find_clusters(pairs, json_paths, npy, tmp_path / "clusters.json", cfg)
    return stats, json.loads((tmp_path / "clusters.json").read_text()), paths


def test_exact_dedup_ignores_case_digits_punctuation_and_keeps_smallest_id(tmp_path):
    part_a = [{"id": "b", "text": "Hello, World 1!"}, {"id": "c", "text": "something else entirely"}]
    part_b = [{"id": "a", "text": "hello world 2"}]
    stats, clusters, paths = run_dedup(tmp_path, [part_a, part_b])
    assert stats["documents_removed"] == 1 and clusters["removed"] == ["b"]
    dedup.apply_clusters(paths[0], tmp_path / "clusters.json", tmp_path / "a.out.jsonl")
    assert [d["id"] for d in read_jsonl(tmp_path / "a.out.jsonl")] == ["c"]


def long_document(seed, n_words=600):
    rng = random.Random(seed)
    return [rng.choice(WORDS) + str(rng.randint(0, 50)) for _ in range(n_words)]


def test_near_duplicates_are_found_and_unrelated_documents_kept(tmp_path):
    original = long_document(1)
    edited = list(original)
    for i in (50, 200, 350, 500):  # a few words changed in a long document
        edited[i] = "changed"
    docs = [
        {"id": "orig", "text": " ".join(original)},
        {"id": "edit", "text": " ".join(edited)},
        {"id": "other", "text": " ".join(long_document(2))},
        {"id": "copy", "text": " ".join(original)},
    ]
    stats, clusters, _ = run_dedup(tmp_path, [docs])
    [cluster] = clusters["clusters"]
    assert cluster["survivor"] == "copy" and cluster["members"] == ["copy", "edit", "orig"]
    edit, orig = cluster["removed"]  # each removed member with its survivor's estimated Jaccard
    assert (orig["id"], orig["exact"], orig["jaccard"]) == ("orig", True, 1.0)
    assert edit["id"] == "edit" and not edit["exact"] and 0.85 <= edit["jaccard"] < 1.0  # true Jaccard: about 0.93
    assert stats["documents_removed"] == 2 and stats["near_duplicate_pairs"] >= 1


def test_dedup_result_does_not_depend_on_the_number_of_parts(tmp_path):
    base = [long_document(s) for s in range(12)]
    docs = [{"id": f"d{i:02d}", "text": " ".join(base[i % 8] if i % 3 else base[i])} for i in range(12)]
    results = []
    for n_parts in (1, 3):
        folder = tmp_path / str(n_parts)
        folder.mkdir()
        parts = [[d for d in docs if stable_hash(d["id"]) % n_parts == k] for k in range(n_parts)]
        results.append(run_dedup(folder, parts)[1])
        folder = tmp_path / f"{n_parts}-split"
        folder.mkdir()
        results.append(run_dedup(folder, parts, band_groups=3, key_ranges=4)[1])  # 12 candidate-pair jobs
    assert all(r["clusters"] == results[0]["clusters"] for r in results) and results[0]["removed"]


def test_splits_are_stable_and_follow_the_fractions():
    fractions = {"validation": 0.1, "test": 0.2, "salt": ""}
    ids = [f"doc{i}" for i in range(5000)]
    first = [split_of(i, fractions) for i in ids]
    assert first == [split_of(i, fractions) for i in ids]
    assert abs(first.count("test") / 5000 - 0.2) < 0.03
    assert abs(first.count("validation") / 5000 - 0.1) < 0.03


def test_dedup_reads_a_long_document_in_pieces_with_the_key_and_hashes_of_the_whole(monkeypatch):
    rng = random.Random(6)
    texts = [
        " ".join(rng.choice(WORDS) + rng.choice(["", ",", " 1999", "!"]) for _ in range(300)),
        "Ünïcode ﬁne café 12 34\n" * 40,
        "",
        "!!! ...",
    ]
    whole = []
    for text in texts:
        folded = dedup.WORD_CHARS.findall(dedup.DIGIT.sub("0", unicodedata.normalize("NFKC", text).lower()))
        whole.append(
            (hashlib.blake2b(" ".join(folded).encode(), digest_size=16).hexdigest(), text_module.WordHasher()(folded))
        )
    monkeypatch.setattr(text_module, "PIECE_CHARS", 16)
    for text, (key, hashes) in zip(texts, whole):
        got_key, got_hashes = dedup.fingerprint(text, text_module.WordHasher())
        assert got_key == key and np.array_equal(got_hashes, hashes)
