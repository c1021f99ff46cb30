"""Benchmark scores through lm-evaluation-harness (`lm_eval`, model type `hf`) on a model's Hugging Face
folder, and `next_line`: a multiple-choice task that the pipeline builds from the corpus's own test
documents, so that a run with no internet has a score that moves with the model's quality.

next_line asks which of `choices` lines follows a passage of `context_lines` lines: the line that does,
or one drawn from another test document. It is written as an lm-eval task (next_line.yaml over
test.jsonl, a `dataset_path: json` task), so that `lm_eval --include_path` runs it as the rule does.
"""

import contextlib
import json
import os
import random

from lmcore.data.splits import documents_in_split
from lmcore.io import atomic_open, cache_path, read_json, write_json

NEXT_LINE = "next_line"
TASK_FILE = (".yaml", ".yml")  # a configured task ending so is a task file of the user's, not a name
MIN_LINE_CHARS = 20  # shorter lines ("Exeunt.", a speaker's name) are guesses, not questions

TASK_YAML = """\
# Which line follows the passage: written by lmcore from the corpus's test documents.
# lm_eval --model hf --model_args pretrained=results/hf/<model> --include_path {folder} --tasks next_line
task: next_line
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def reservoir_add(sample, item, seen, size, rng):
    """Algorithm R: after `seen` items, `sample` is a uniform draw of `size` of them, in O(size) memory."""
    if len(sample) < size:
        sample.append(item)
    else:
        j = rng.randrange(seen)
        if j < size:
            sample[j] = item


def next_line_questions(docs, questions, choices, context_lines, max_chars, seed, fits=None, left_out=None):
    """Up to `questions` questions {context, choices, answer} drawn uniformly from every eligible place in
    `docs` (a line of MIN_LINE_CHARS to `max_chars` characters, so that a choice fits in a model's context,
    after `context_lines` non-empty lines), each with choices - 1 wrong lines drawn from other documents;
    the answer's position is drawn too. One pass, in memory bounded by the questions, not the documents.
    `fits(line)`, where given, says whether a line fits every scored model's context; `left_out` counts the
    lines it leaves out."""
    rng = random.Random(seed)
    picked, pool, places, lines_seen = [], [], 0, 0
    for d, doc in enumerate(docs):
        lines = [line for line in doc["text"].split("\n") if line.strip()]
        for k, line in enumerate(lines):
            if not MIN_LINE_CHARS <= len(line) <= max_chars:
                continue
            if fits and not fits(line):
                left_out["lines"] += 1
                continue
            lines_seen += 1
            reservoir_add(pool, (d, line), lines_seen, 4 * choices * questions, rng)
            if k >= context_lines:
                places += 1
                reservoir_add(picked, (d, "\n".join(lines[k - context_lines : k]) + "\n", line), places, questions, rng)
    rows = []
    for d, context, line in picked:
        others = [text for doc, text in pool if doc != d and text != line]
        if len(set(others)) < choices - 1:
            raise ValueError(f"next_line: the test documents hold too few lines for {choices} choices")
        options = rng.sample(sorted(set(others)), choices - 1)
        answer = rng.randrange(choices)
        options.insert(answer, line)
        rows.append({"context": context, "choices": options, "answer": answer})
    return rows


def context_fit(contexts):
    """`fits(line)` for {tokenizer path: the shortest context of the scored models that use it}: the line, with
    the space lm-eval puts before a choice, is no longer than each (None: no model to fit)."""
    if not contexts:
        return None
    from lmcore.tokens.tokenizer import Tokenizer

    limits = [(Tokenizer(path), context) for path, context in sorted(contexts.items())]
    return lambda line: all(len(tok.encode(" " + line)) <= context for tok, context in limits)


def write_next_line_task(
    parts, fractions, folder, questions=500, choices=4, context_lines=2, max_chars=80, seed=0, contexts=None
):
    """next_line.yaml and test.jsonl in `folder` (a path relative to the workflow's folder, where the rule
    runs lm_eval: datasets reads data_files from there) from the test documents of `parts`; the lines are
    those that fit every scored model's context (`contexts`, context_fit). Returns {questions, left_out}."""
    docs = documents_in_split(parts, "test", fractions)
    left_out = {"lines": 0}
    rows = next_line_questions(
        docs, questions, choices, context_lines, max_chars, seed, context_fit(contexts), left_out
    )
    if not rows:
        raise ValueError(
            f"next_line: no line of {MIN_LINE_CHARS} to {max_chars} characters after {context_lines} lines in the "
            f"test documents ({left_out['lines']:,} left out as longer than a scored model's context)"
        )
    os.makedirs(folder, exist_ok=True)
    with atomic_open(os.path.join(folder, "test.jsonl")) as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    with atomic_open(os.path.join(folder, "next_line.yaml")) as f:
        f.write(TASK_YAML.format(folder=folder, data=os.path.join(folder, "test.jsonl")))
    return {"questions": len(rows), "left_out_lines": left_out["lines"], "contexts": sorted((contexts or {}).values())}


def task_specs(tasks, next_line_folder):
    """What lm_eval.simple_evaluate takes for each configured task: a built-in task's name, the config of a
    task YAML file of the user's, and next_line's YAML read like the user's (as `lm_eval --tasks file.yaml` reads
    one: its includes and !function tags resolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    specs = []
    for task in tasks:
        if task == NEXT_LINE:
            task = os.path.join(next_line_folder, "next_line.yaml")
        specs.append(load_yaml(task, resolve_func=True) if task.endswith(TASK_FILE) else task)
    return specs


def unknown_builtin_tasks(tasks):
    """The configured names that are neither next_line, nor a YAML file, nor a task lm-eval knows."""
    names = [t for t in tasks if t != NEXT_LINE and not t.endswith(TASK_FILE)]
    if not names:
        return []
    known = builtin_tasks()
    return [t for t in names if t not in known]


def builtin_tasks():
    """The names of the tasks lm-eval ships. Indexing them takes about 20 s, and the workflow checks the config
    each time it plans: the list is kept in the user's cache, once per lm-eval version."""
    from importlib.metadata import version

    path = cache_path(f"lm_eval-{version('lm_eval')}-tasks.json")
    with contextlib.suppress(OSError, ValueError):
        return set(read_json(path))
    from lm_eval.tasks import TaskManager

    names = sorted(TaskManager().all_tasks)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, names)
    return set(names)


def check_questions_fit(hf_folder, next_line_folder):
    """A next_line choice longer than the model's context stops lm-eval with a bare AssertionError: named here."""
    from transformers import AutoConfig, AutoTokenizer

    context = AutoConfig.from_pretrained(hf_folder).max_position_embeddings
    tokenizer = AutoTokenizer.from_pretrained(hf_folder)
    with open(os.path.join(next_line_folder, "test.jsonl"), encoding="utf-8") as f:
        tokens, longest = max((len(tokenizer(c).input_ids), c) for line in f for c in json.loads(line)["choices"])
    if tokens > context:
        raise ValueError(
            f"next_line: the line {longest!r} is {tokens} tokens, more than the {context} of {hf_folder}'s "
            "context; lower evals.next_line.max_chars"
        )


def chance_level(output_type, samples):
    """Accuracy of a uniform guess: the mean of 1 / choices over the questions of a multiple-choice task."""
    if output_type != "multiple_choice" or not samples:
        return None
    return sum(1 / len(s["arguments"]) for s in samples) / len(samples)


def score_rows(results):
    """[{task, metric, value, stderr, chance, n}] of what simple_evaluate returned, as lm_eval's table prints."""
    rows = []
    for task, values in results["results"].items():
        config = results["configs"].get(task, {})
        chance = chance_level(config.get("output_type"), results.get("samples", {}).get(task))
        n = results.get("n-samples", {}).get(task, {}).get("effective")
        for key, value in values.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            stderr = values.get(f"{metric}_stderr,{filter_name}")
            rows.append({
                "task": task, "metric": metric, "filter": filter_name, "value": value,
                "stderr": stderr if isinstance(stderr, (int, float)) else None,
                "chance": chance if metric.startswith("acc") else None, "n": n,
            })  # fmt: skip
    return rows


def run_lm_eval(hf_folder, tasks, next_line_folder, out, num_fewshot=None, limit=None, batch_size=16, device=None):
    """Score one exported model on the configured tasks; writes `out` (JSON: the rows of score_rows and the
    settings). Offline: a built-in task whose data is not in the Hugging Face cache fails, named."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    import torch

    if NEXT_LINE in tasks:
        check_questions_fit(hf_folder, next_line_folder)
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": hf_folder, "dtype": "float32"},
        tasks=task_specs(tasks, next_line_folder),
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
        log_samples=True,
    )
    scores = {
        "hf_folder": hf_folder,
        "lm_eval": lm_eval.__version__,
        "num_fewshot": num_fewshot,
        "limit": limit,
        "scores": score_rows(results),
    }
    write_json(out, scores)
    return scores
