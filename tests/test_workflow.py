"""The whole pipeline through Snakemake: dry runs, a tiny end-to-end run, exact reruns, bad configs."""

import copy
import html.parser
import json
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from helpers import (
    DATA_JOBS,
    DECONTAMINATION_JOBS,
    REPO,
    SCHEMA,
    TOKEN_JOBS,
    jobs_from,
    planned_jobs,
    snakemake,
    snakemake_command,
    tiny_config,
    write_config,
)
from lmcore.export.architectures import HF_FILES
from lmcore.report.page import fmt


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


ALL_RULES = {
    "download",
    "ingest",
    "ingest_stats",
    "clean",
    "corpus_stats",
    "dedup_signatures",
    "dedup_pairs",
    "dedup_clusters",
    "dedup_apply",
    "eval_ngrams",
    "decontaminate",
    "train_tokenizer",
    "eval_tokenizer",
    "shard",
    "shards_manifest",
    "next_line_task",
    "lm_eval",
    "train",
    "evaluate",
    "sample",
    "export_hf",
    "export_gguf",
    "report",
    "all",
}


def test_dry_run_of_default_config_lists_every_rule(tmp_path):
    result = snakemake(tmp_path, "-n", configfile=os.path.join(REPO, "config.yaml"))
    assert result.returncode == 0, result.stderr
    assert set(planned_jobs(result)) == ALL_RULES


def test_tiny_pipeline_produces_report_and_nothing_is_left_to_do(pipeline):
    work = pipeline["work"]
    report = (work / "results" / "report.html").read_text(encoding="utf-8")
    parser = html.parser.HTMLParser()
    parser.feed(report)
    parser.close()
    for name in ("a", "b"):
        assert f"<td>{name}</td>" in report and f"<h3>{name}</h3>" in report  # models table and samples
        summary = json.loads((work / "results" / "models" / name / "summary.json").read_text())
        evaluation = json.loads((work / "results" / "eval" / f"{name}.json").read_text())
        assert f"{summary['parameters']:,}" in report
        assert fmt(evaluation["test"]["perplexity"]) in report and fmt(summary["tokens_per_s"]) in report
        # A trained model beats the unigram baseline counted on the train split.
        assert evaluation["test"]["loss"] < evaluation["baseline"]["loss"]
    assert "<td>ok: gpt2</td>" in report  # model a has GPT-2's shape; b (layernorm with rope) has no HF architecture
    assert "no: position: rope: no Hugging Face architecture has this mix" in report
    # Ready to upload as it is: the export's files and nothing else; b has no folder.
    assert sorted(p.name for p in (work / "results" / "hf" / "a").iterdir()) == sorted(HF_FILES)
    assert not (work / "results" / "hf" / "b").exists()
    assert sorted(p.name for p in (work / "results" / "gguf").iterdir()) == ["a.gguf"]  # llama.cpp's gpt2 graph
    assert '<a href="gguf/a.gguf">GGUF</a>' in report
    modes = {
        str(p.relative_to(work)): oct(p.stat().st_mode & 0o777) for p in (work / "results").rglob("*") if p.is_file()
    }
    assert {path for path, mode in modes.items() if mode != oct(0o666 & ~umask())} == set(), modes  # weights too
    assert "<script>alert(1)</script>" not in report
    assert report.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # a prompt, its samples, a dropped document
    assert "texts/short.txt" in report
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", report), (
        "the report must not load anything from the network"
    )
    again = snakemake(work, "-n", "results/report.html", configfile=pipeline["configfile"])
    assert again.returncode == 0
    assert planned_jobs(again) == {}
    assert "Nothing to be done" in again.stdout + again.stderr


def changed_config(pipeline, change):
    config = copy.deepcopy(pipeline["config"])
    change(config)
    return write_config(pipeline["work"] / "changed.yaml", config)


def jobs_and_wildcards(pipeline, change):
    result = snakemake(pipeline["work"], "-n", "results/report.html", configfile=changed_config(pipeline, change))
    assert result.returncode == 0, result.stderr
    return planned_jobs(result), result.stdout + result.stderr


def test_changing_one_models_lr_reruns_only_that_model(pipeline):
    jobs, out = jobs_and_wildcards(pipeline, lambda c: c["models"]["a"].update(lr=0.003))
    assert jobs == {"train": 1, "evaluate": 1, "sample": 1, "export_hf": 1, "export_gguf": 1, "lm_eval": 1, "report": 1}
    assert "model=a" in out and "model=b" not in out


def test_turning_loggers_or_activation_checkpointing_on_retrains_nothing(pipeline):
    """They change how a run is watched or fits in memory, not the model: a trained model stays trained, and
    only the report, which prints the config, is written again."""
    change = {"loggers": ["tensorboard"], "wandb_project": "x", "activation_checkpointing": True}
    jobs, _ = jobs_and_wildcards(pipeline, lambda c: c["models"]["a"].update(change))
    assert jobs == {"report": 1}


def test_gguf_settings_rewrite_only_the_gguf_files(pipeline):
    jobs, out = jobs_and_wildcards(pipeline, lambda c: c.update(gguf={"dtype": "f16"}))
    assert jobs == {"export_gguf": 1, "report": 1} and "model=a" in out
    jobs, _ = jobs_and_wildcards(pipeline, lambda c: c.update(gguf={"enabled": False}))
    assert jobs == {"report": 1}


def test_a_continued_model_trains_after_its_parent_and_again_when_its_parent_changes(pipeline):
    child = {"d_model": 32, "n_layers": 1, "n_heads": 2, "init_from": {"model": "a"}, "lr": 0.001, "max_steps": 10}
    jobs, out = jobs_and_wildcards(pipeline, lambda c: c["models"].update(c=child))
    assert jobs == {
        "train": 1,
        "evaluate": 1,
        "sample": 1,
        "export_hf": 1,
        "export_gguf": 1,
        "lm_eval": 1,
        "report": 1,
    }  # a is done: only the child trains
    assert re.search(r"rule train:\n    input: [^\n]*results/models/a/model\.safetensors", out)
    jobs, out = jobs_and_wildcards(pipeline, lambda c: (c["models"].update(c=child), c["models"]["a"].update(lr=0.003)))
    assert jobs["train"] == 2 and out.index("model=a") < out.index("model=c")


def test_changing_a_cleaning_threshold_reruns_everything_downstream(pipeline):
    jobs, _ = jobs_and_wildcards(pipeline, lambda c: c["clean"].update(min_words=25))
    assert jobs == {
        **jobs_from("clean", DATA_JOBS),
        "corpus_stats": 1,
        **DECONTAMINATION_JOBS,
        **TOKEN_JOBS,
        "train": 2,
        "evaluate": 2,
        "sample": 2,
        "export_hf": 1,
        "export_gguf": 1,
        "next_line_task": 1,  # the test documents changed
        "lm_eval": 1,
        "report": 1,
    }


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda c: c["models"]["a"].update(lrr=0.1), "lrr"),
        (lambda c: c["tokenizers"]["tok"].update(vocab_size="big"), "tokenizers.tok.vocab_size"),
        (lambda c: c["models"]["b"].update(d_model=50), "models.b.d_model"),
        (lambda c: c["models"]["a"].update(tokenizer="nope"), "models.a.tokenizer"),
        (lambda c: c["splits"].update(test=0.9), "splits"),
    ],
)
def test_broken_config_fails_before_any_job_with_the_key_named(tmp_path, change, key):
    config = tiny_config("http://127.0.0.1:9/corpus.tar.gz", None)
    change(config)
    result = snakemake(tmp_path, "results/report.html", configfile=write_config(tmp_path / "bad.yaml", config))
    assert result.returncode != 0
    assert key in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_generate_cli_streams_a_continuation(pipeline):
    model_dir = pipeline["work"] / "results" / "models" / "a"
    cmd = [
        sys.executable,
        "-m",
        "lmcore",
        "generate",
        str(model_dir),
        "--prompt",
        "ROMEO:",
        "--max-new-tokens",
        "8",
        "--temperature",
        "0.8",
        "--top-k",
        "20",
        "--top-p",
        "0.9",
        "--seed",
        "3",
        "--num-samples",
        "2",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("ROMEO:") == 2 and "--- sample 2 ---" in first.stdout
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout == first.stdout  # seeded


def test_snakemake_report_gives_provenance_with_flagged_outputs(pipeline):
    result = snakemake(pipeline["work"], "--report", "provenance.html", configfile=pipeline["configfile"])
    assert result.returncode == 0, result.stderr[-3000:]
    provenance = (pipeline["work"] / "provenance.html").read_text(encoding="utf-8")
    for rule in ALL_RULES - {"all"}:  # every rule of the run, with its runtime
        assert f'{{"rule": "{rule}", "runtime": ' in provenance, rule
    for model in ("a", "b"):  # the outputs flagged with report(), under their captions
        for path in (
            f"results/models/{model}/summary.json",
            f"results/eval/{model}.json",
            f"results/samples/{model}.json",
        ):
            assert f'"{path}": {{"name": "{os.path.basename(path)}"' in provenance, path
        assert f"Training summary of model {model}: parameters" in provenance
    assert '"results/report.html": {"name": "report.html"' in provenance


@pytest.mark.slow
def test_training_killed_and_rerun_resumes_to_the_same_weights(tmp_path, corpus):
    """SIGKILL the whole Snakemake run part way through training; the rerun resumes and ends
    with the weights of a run never interrupted, bit for bit. One thread each: with two, two
    processes' CPU kernels differed in the last bit now and then even without a resume (a 2-core
    Xeon with AVX-512: 1 run in 8 of 300 steps), and the difference grows over the steps."""
    import signal

    from lmcore.config import prepare_config
    from lmcore.model.folder import load_safetensors
    from lmcore.train.config import TrainJob
    from lmcore.train.loop import train

    config = tiny_config(corpus[0].as_uri(), corpus[1])
    config["models"] = {
        "a": {
            **config["models"]["a"],
            "max_steps": 400,
            "checkpoint_interval": 50,
            "log_interval": 50,
            "eval_interval": 100,
        }
    }
    config["resources"] = {"train": {"threads": 1}}
    configfile = write_config(tmp_path / "config.yaml", config)
    target = "results/models/a/model.safetensors"
    cmd = snakemake_command(tmp_path, target, configfile=configfile)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first_checkpoint = tmp_path / "results" / "checkpoints" / "a" / "ckpt-00000050.pt"
    deadline = time.monotonic() + 240
    while not first_checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first_checkpoint.exists() and not (tmp_path / target).exists(), (
        "the kill must land part way through training"
    )

    assert snakemake(tmp_path, "--unlock", configfile=configfile).returncode == 0
    rerun = snakemake(tmp_path, target, configfile=configfile)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert re.search(r"Resumed from step [1-9]\d*", (tmp_path / "logs" / "train" / "a.log").read_text())

    resolved = prepare_config(config, SCHEMA)
    reference = tmp_path / "reference"
    train(
        TrainJob(
            resolved["models"]["a"],
            str(tmp_path / "results/tokenizers/tok/spm.model"),
            str(tmp_path / "results/shards/tok/manifest.json"),
            str(reference),
            str(tmp_path / "reference-checkpoints"),
            threads=1,
        ),
        log=lambda *a: None,
    )
    resumed, uninterrupted = load_safetensors(tmp_path / target), load_safetensors(reference / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_a_successful_run_leaves_only_declared_outputs(pipeline):
    """Every file under results/ is an output some rule declares (or lies inside a declared
    folder, or is a training checkpoint): no temporary file survives a successful run."""
    summary = snakemake(pipeline["work"], "--summary", "results/report.html", configfile=pipeline["configfile"])
    assert summary.returncode == 0, summary.stderr[-3000:]
    declared = {line.split("\t")[0] for line in summary.stdout.splitlines()[1:] if line.strip()}
    assert "results/report.html" in declared and "results/dedup/clusters.json" in declared
    results = pipeline["work"] / "results"
    undeclared = []
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(pipeline["work"]).as_posix()
        if path.is_dir() or rel.startswith("results/checkpoints/"):
            continue
        if rel not in declared and not any(rel.startswith(d + "/") for d in declared):
            undeclared.append(rel)
    assert undeclared == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "-1"], "argument --temperature: must be 0 (greedy) or more, got -1"),
        (["--temperature", "nan"], "argument --temperature: must be 0 (greedy) or more, got nan"),
        (["--top-k", "0"], "argument --top-k: must be 1 or more, got 0"),
        (["--top-p", "0"], "argument --top-p: must be in (0, 1], got 0"),
        (["--top-p", "1.5"], "argument --top-p: must be in (0, 1], got 1.5"),
        (["--max-new-tokens", "ten"], "argument --max-new-tokens: 'ten' is not an integer"),
    ],
)
def test_generate_cli_rejects_bad_settings_as_usage_errors(tmp_path, bpe, capsys, args, message):
    folder, _ = damaged_model_folder(tmp_path, bpe, lambda b: b)
    status, out, err = run_generate(capsys, folder, *args)
    assert (status, out) == (2, "")
    assert message in err and "Traceback" not in err


def test_generate_cli_names_a_missing_model_folder(tmp_path):
    """The one test of the command itself: `python -m lmcore` exits 2 with the usage error, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "lmcore", "generate", str(tmp_path / "results" / "models" / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert "argument model_dir:" in result.stderr and "nope" in result.stderr and "no config.json" in result.stderr


def damaged_model_folder(tmp_path, tokenizer, damage):
    """A model folder as training writes it, its weights then damaged."""
    from lmcore.model.config import ModelConfig
    from lmcore.model.folder import save_model
    from lmcore.model.gpt import GPT

    folder = tmp_path / "model"
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layers=1, n_heads=2, context_length=16))
    save_model(folder, model, {}, tokenizer.path, [], {})
    weights = folder / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    return folder, weights


def run_generate(capsys, folder, *args):
    """`python -m lmcore generate folder args` in this process: (exit status, stdout, stderr)."""
    from lmcore.__main__ import main

    with pytest.raises(SystemExit) as stopped:
        main(["generate", str(folder), "--max-new-tokens", "4", *args])
    out = capsys.readouterr()
    return stopped.value.code, out.out, out.err


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b[:200] + bytes(x ^ 0xFF for x in b[200:264]) + b[264:]],
    ids=["cut-short", "flipped-bytes"],
)
def test_generate_cli_names_a_damaged_weights_file_as_a_usage_error(tmp_path, bpe, capsys, damage):
    folder, weights = damaged_model_folder(tmp_path, bpe, damage)
    status, out, err = run_generate(capsys, folder)
    assert (status, out) == (2, "") and "Traceback" not in err
    assert f"{weights}: sha256 differs from the one config.json recorded when the model was trained" in err


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: (folder / "model.safetensors").unlink(), "model.safetensors: missing (the folder's weights)"),
        (lambda folder: (folder / "tokenizer.model").write_bytes(b"cut"), "tokenizer.model: sha256 differs"),
        (lambda folder: (folder / "tokenizer.model").unlink(), "tokenizer.model: missing (the folder's tokenizer)"),
        (
            lambda folder: (folder / "config.json").write_text('{"model": {}}'),
            "config.json: no weights_sha256, tokenizer_fingerprint in it",
        ),
    ],
    ids=["no-weights", "tokenizer-cut-short", "no-tokenizer", "not-lmcore-config"],
)
def test_generate_cli_names_a_missing_or_damaged_file_of_the_folder_as_a_usage_error(
    tmp_path, bpe, capsys, damage, message
):
    folder, _ = damaged_model_folder(tmp_path, bpe, lambda b: b)
    damage(folder)
    status, out, err = run_generate(capsys, folder)
    assert (status, out) == (2, "") and "Traceback" not in err
    assert message in err


def test_every_job_log_is_timestamped_and_training_logs_a_line_a_person_can_read(pipeline):
    logs = sorted((pipeline["work"] / "logs").rglob("*.log"))
    assert len(logs) >= 14
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
    for log in logs:
        lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert lines and all(stamp.match(line) for line in lines), log
    train_log = (pipeline["work"] / "logs" / "train" / "a.log").read_text(encoding="utf-8")
    assert re.search(
        r"step 40/80 \(50%\) \| loss \d+\.\d{3} \| val \d+\.\d{3} \| lr \d\.\de-\d\d \| \d+\.\dk tok/s \| "
        r"\d+s elapsed, ETA \d+s\n",
        train_log,
    )
    clean_log = (pipeline["work"] / "logs" / "clean" / "fake" / "part-0.log").read_text(encoding="utf-8")
    assert re.search(r"kept \d+ of \d+ documents, .*; read \d+\.\d MB in \d+\.\d s \([\d.]+ MB/s\)", clean_log)


def test_an_error_lmcore_names_reaches_the_console_as_its_message_and_the_log_keeps_the_traceback(tmp_path, corpus):
    """A wrong sha256, only knowable inside the download job, printed 30 lines of traceback before its cause."""
    path, _ = corpus
    configfile = write_config(tmp_path / "config.yaml", tiny_config(path.as_uri(), "0" * 64))
    result = snakemake(tmp_path, "results/raw/fake", configfile=configfile, timeout=300)
    assert result.returncode != 0
    log = tmp_path / "logs" / "download" / "fake.log"
    assert f"Error in {log.relative_to(tmp_path)}: " in result.stderr and "sha256" in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" in log.read_text(encoding="utf-8")
