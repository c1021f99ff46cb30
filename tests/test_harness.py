"""Benchmark scores through lm-evaluation-harness: the corpus's own next_line task asks what it says, a
model that knows the answers scores 1, a uniform one the chance level, and the pipeline's scores are
what `lm_eval` prints on the command line for the same folder and task."""

import glob
import json
import os
import subprocess
import sys

import pytest

from helpers import SCHEMA, documents, tiny_config
from lmcore.evaluation.harness import TASK_YAML, next_line_questions, run_lm_eval

pytest.importorskip("lm_eval")


def test_each_question_asks_for_the_line_that_follows_its_passage_among_lines_of_other_documents():
    docs = documents(30)
    lines = {doc["id"]: [line for line in doc["text"].split("\n") if line.strip()] for doc in docs}
    rows = next_line_questions(docs, questions=50, choices=4, context_lines=2, max_chars=200, seed=1)
    assert len(rows) == 50
    for row in rows:
        answer = row["choices"][row["answer"]]
        passage = row["context"].split("\n")[:2]
        owners = [
            i
            for i, ls in lines.items()
            if any(ls[k - 2 : k] + [ls[k]] == passage + [answer] for k in range(2, len(ls)))
        ]
        assert owners, row  # the passage and its next line, from one document
        wrong = [c for i, c in enumerate(row["choices"]) if i != row["answer"]]
        assert len(set(wrong)) == 3 and answer not in wrong
        assert not any(c in lines[owners[0]] for c in wrong)  # from other documents
        assert all(20 <= len(c) <= 200 for c in row["choices"])
    assert len({row["answer"] for row in rows}) == 4  # the answer's place is drawn
    assert rows == next_line_questions(docs, questions=50, choices=4, context_lines=2, max_chars=200, seed=1)


def test_next_lines_questions_fit_the_shortest_context_of_the_scored_models_and_say_how_many_lines_did_not(
    tmp_path, bpe
):
    """A model of 12 tokens of context and the default max_chars of 80: lines longer than its context are left
    out (lm-eval stopped the whole run on one), counted in stats.json."""
    from lmcore.evaluation.harness import write_next_line_task
    from lmcore.io import write_jsonl

    write_jsonl(tmp_path / "part.jsonl", documents(60, seed=3))
    folder = str(tmp_path / "task")
    stats = write_next_line_task([tmp_path / "part.jsonl"], {"validation": 0.0, "test": 0.999}, folder, questions=40,
                                 max_chars=80, contexts={str(bpe.path): 12})  # fmt: skip
    rows = [json.loads(line) for line in open(os.path.join(folder, "test.jsonl"))]
    assert stats["questions"] == len(rows) == 40 and stats["left_out_lines"] > 0 and stats["contexts"] == [12]
    assert all(len(bpe.encode(" " + c)) <= 12 for row in rows for c in row["choices"])
    assert max(len(bpe.encode(" " + c)) for row in rows for c in row["choices"]) >= 6


def test_a_task_lm_eval_does_not_know_fails_the_config_and_its_tasks_are_indexed_once(monkeypatch):
    """Indexing lm-eval's tasks takes about 20 s: once per lm-eval version, then the user's cache answers."""
    import lm_eval.tasks

    from lmcore.config import ConfigError, prepare_config

    config = tiny_config("file:///x", None)
    config["evals"] = {"tasks": ["next_line", "hellaswagg"]}
    message = r"'evals\.tasks': \['hellaswagg'\] is not next_line, a \.yaml file or a task lm-eval knows"
    with pytest.raises(ConfigError, match=message):
        prepare_config(config, SCHEMA)
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", None)  # indexing again would fail
    config["evals"] = {"tasks": ["hellaswag"]}
    assert prepare_config(config, SCHEMA)["evals"]["tasks"] == ["hellaswag"]


def write_task(folder, rows):
    """Questions of the test's own, as the next_line task: its YAML over them."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "test.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    with open(os.path.join(folder, "next_line.yaml"), "w", encoding="utf-8") as f:
        f.write(TASK_YAML.format(folder=folder, data=os.path.join(folder, "test.jsonl")))


def single_token_choices(tokenizer, context, n):
    """n pieces of one byte length that each add exactly one token after `context`, as lm-eval splits a
    continuation from its context."""
    base = tokenizer(context, add_special_tokens=False).input_ids
    by_length = {}
    for piece in tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size)):
        text = tokenizer.convert_tokens_to_string([piece])
        ids = tokenizer(context + text, add_special_tokens=False).input_ids
        if text.strip() and len(ids) == len(base) + 1 and ids[: len(base)] == base:
            by_length.setdefault(len(text.encode()), []).append((text, ids[-1]))
    return max(by_length.values(), key=len)[:n]


def with_head(hf_folder, out, token):
    """The model of `hf_folder` with a head that predicts `token` whatever the input (None: every token alike,
    a uniform model): the final LayerNorm outputs a constant c * e_0, and the tied embedding's rows are zero but
    `token`'s, whose first entry is 1."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(hf_folder)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 50.0
        model.transformer.wte.weight.zero_()
        if token is not None:
            model.transformer.wte.weight[token, 0] = 1.0
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(hf_folder).save_pretrained(out)
    return str(out)


def test_a_model_that_knows_the_answers_scores_1_and_a_uniform_one_the_chance_level(tmp_path, pipeline):
    from transformers import AutoTokenizer

    hf = str(pipeline["work"] / "results" / "hf" / "a")
    context = "ROMEO:\n"
    choices = single_token_choices(AutoTokenizer.from_pretrained(hf), context, 4)
    assert len(choices) == 4
    (answer, answer_id), others = choices[0], [text for text, _ in choices[1:]]
    rows = []
    for i in range(40):  # the answer in each place in turn
        options = others[:]
        options.insert(i % 4, answer)
        rows.append({"context": context, "choices": options, "answer": i % 4})
    task = str(tmp_path / "task")
    write_task(task, rows)
    for token, expected in [(answer_id, 1.0), (None, 0.25)]:  # a uniform model's ties go to the first choice
        folder = with_head(hf, tmp_path / f"model-{token}", token)
        scores = run_lm_eval(folder, ["next_line"], task, str(tmp_path / f"scores-{token}.json"), batch_size=8)
        values = {r["metric"]: r["value"] for r in scores["scores"]}
        assert values == {"acc": expected, "acc_norm": expected}
        assert {r["chance"] for r in scores["scores"]} == {0.25} and {r["n"] for r in scores["scores"]} == {40}


def test_the_pipelines_scores_are_what_the_lm_eval_command_prints(pipeline, tmp_path):
    work = pipeline["work"]
    ours = json.loads((work / "results" / "evals" / "a.json").read_text())
    command = [os.path.join(os.path.dirname(sys.executable), "lm_eval"), "run", "--model", "hf",
               "--model_args", "pretrained=results/hf/a,dtype=float32", "--include_path",
               "results/evals/tasks/next_line", "--tasks", "next_line", "--device", "cpu", "--batch_size", "16",
               "--output_path", str(tmp_path / "cli")]  # fmt: skip
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "cli" / "**" / "results_*.json"), recursive=True)
    printed = json.load(open(path))["results"]["next_line"]
    assert {r["metric"]: r["value"] for r in ours["scores"]} == {
        "acc": printed["acc,none"],
        "acc_norm": printed["acc_norm,none"],
    }
    assert [r["stderr"] for r in ours["scores"]] == [printed["acc_stderr,none"], printed["acc_norm_stderr,none"]]
    html = (work / "results" / "report.html").read_text()
    assert "Benchmark scores" in html and "next_line" in html and "acc_norm" in html
