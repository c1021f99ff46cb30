"""Benchmark decontamination (lmcore.evaluation.contamination): a training document that shares a 13-word
n-gram with a task's evaluation data is found, counted per task and, with `drop`, left out."""

import json

import numpy as np

from helpers import documents
from lmcore.data.splits import split_of
from lmcore.evaluation.contamination import contamination_table, decontaminate_part, write_eval_ngrams
from lmcore.io import read_jsonl, write_jsonl

FRACTIONS = {"validation": 0.1, "test": 0.3}
QUESTION = "Which river rises in two branches that meet near Hexham and flows east through Newcastle to the sea?"


def corpus(tmp_path):
    """Documents of both splits; one training document quotes 13 words of a test document, and one quotes
    the user's task's question; the rest share no long run of words."""
    docs = documents(40, seed=7)
    test = next(d for d in docs if split_of(d["id"], FRACTIONS) == "test")
    train = [d for d in docs if split_of(d["id"], FRACTIONS) == "train"]
    quoted = " ".join(test["text"].split()[5:18])  # 13 words of a test document
    train[0]["text"] += "\nAs the other said: " + quoted.upper() + "!"  # case and punctuation do not hide it
    train[1]["text"] += "\n" + QUESTION
    write_jsonl(tmp_path / "part.jsonl", docs)
    return docs, train


def user_task(tmp_path):
    (tmp_path / "rivers.jsonl").write_text(json.dumps({"question": QUESTION, "choices": ["Tyne", "Wear"]}) + "\n")
    (tmp_path / "rivers.yaml").write_text(
        "task: rivers\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: rivers.jsonl\n"
        "process_docs: !function utils.process\n"
    )
    return str(tmp_path / "rivers.yaml")


def test_the_documents_that_share_13_words_with_a_tasks_data_are_found_per_task(tmp_path):
    docs, train = corpus(tmp_path)
    tasks = ["next_line", user_task(tmp_path), "hellaswag"]
    checked = write_eval_ngrams(tasks, [tmp_path / "part.jsonl"], FRACTIONS, 13, tmp_path / "ngrams.npz")
    assert checked["next_line"] > 0 and checked["rivers"] > 0 and checked["hellaswag"] is None  # on the Hub
    stats = decontaminate_part(
        tmp_path / "part.jsonl", tmp_path / "ngrams.npz", FRACTIONS, 13, "report", tmp_path / "out.jsonl"
    )
    assert stats["next_line"] == {"documents": 1, "examples": [train[0]["id"]]}
    assert stats["rivers"] == {"documents": 1, "examples": [train[1]["id"]]}
    assert [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")] == [d["id"] for d in docs]  # report: all kept
    table = contamination_table([stats, stats], checked)
    assert table["next_line"]["documents"] == 2 and table["hellaswag"]["ngrams"] is None


def test_drop_leaves_the_contaminated_training_documents_out_and_no_test_document(tmp_path):
    docs, train = corpus(tmp_path)
    write_eval_ngrams(["next_line"], [tmp_path / "part.jsonl"], FRACTIONS, 13, tmp_path / "ngrams.npz")
    decontaminate_part(tmp_path / "part.jsonl", tmp_path / "ngrams.npz", FRACTIONS, 13, "drop", tmp_path / "out.jsonl")
    kept = [d["id"] for d in read_jsonl(tmp_path / "out.jsonl")]
    assert kept == [d["id"] for d in docs if d["id"] != train[0]["id"]]


def test_a_shorter_run_of_shared_words_is_no_overlap(tmp_path):
    docs, train = corpus(tmp_path)
    write_eval_ngrams(["next_line"], [tmp_path / "part.jsonl"], FRACTIONS, 14, tmp_path / "ngrams.npz")
    stats = decontaminate_part(
        tmp_path / "part.jsonl", tmp_path / "ngrams.npz", FRACTIONS, 14, "report", tmp_path / "o.jsonl"
    )
    assert stats["next_line"]["documents"] == 0  # the quote is 13 words
    with np.load(tmp_path / "ngrams.npz") as f:
        assert list(f["names"]) == ["next_line"]
