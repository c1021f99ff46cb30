"""Reruns see changed data: a `path:` source whose files are added, edited or removed reruns
its download and everything after it, and nothing else."""

import contextlib
import json
import os
import random

import pytest
import yaml

from helpers import DATA_JOBS, fake_document, jobs_from, planned_jobs, snakemake, tiny_config, write_config

TARGETS = ["results/dedup/mine/part-0.jsonl", "results/dedup/mine/part-1.jsonl"]


pytestmark = pytest.mark.slow  # each test reads a run of Snakemake, or starts one


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A folder of text files as a `path:` source, run through dedup once."""
    work = tmp_path_factory.mktemp("local")
    corpus = work / "corpus"
    corpus.mkdir()
    rng = random.Random(1)
    for i in range(12):
        (corpus / f"doc{i:02d}.txt").write_text(fake_document(rng, 40), encoding="utf-8")
    (corpus / "notes.md").write_text("excluded by the glob below", encoding="utf-8")
    config = tiny_config(None, None)
    config["sources"] = {"mine": {"path": str(corpus), "exclude": ["*.md"], "parts": 2}}
    configfile = write_config(work / "config.yaml", config)
    result = snakemake(work, *TARGETS, configfile=configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, corpus, configfile


def dry_run(local_run):
    work, _, configfile = local_run
    result = snakemake(work, "-n", *TARGETS, configfile=configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


def test_an_untouched_source_reruns_nothing(local_run):
    assert dry_run(local_run) == {}


def test_reading_documents_otherwise_reruns_ingest_and_never_fetches_again(local_run):
    work, _, configfile = local_run
    config = yaml.safe_load(configfile.read_text())
    config["sources"]["mine"]["documents"] = {"split": "\n\n"}
    other = write_config(work / "split.yaml", config)
    result = snakemake(work, "-n", *TARGETS, configfile=other)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == jobs_from("ingest", DATA_JOBS)


@contextlib.contextmanager
def restored(path):
    """Put a file back as it was (text and times), or remove it if it was not there."""
    before = (path.read_text(encoding="utf-8"), path.stat()) if path.exists() else None
    try:
        yield path
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(before[0], encoding="utf-8")
            os.utime(path, ns=(before[1].st_atime_ns, before[1].st_mtime_ns))


def test_the_download_param_leaves_out_how_documents_are_read_and_training_leaves_out_how_it_is_watched():
    from lmcore.workflow.jobs import fetch_params, train_params

    source = {"url": "https://example.org/a.tar.gz", "sha256": "ab", "documents": "file", "where": None, "parts": 4}
    assert fetch_params(source) == {"url": "https://example.org/a.tar.gz", "sha256": "ab"}
    entry = {"lr": 1e-3, "loggers": ["tensorboard"], "wandb_project": "x", "activation_checkpointing": True}
    assert train_params(entry) == {"lr": 1e-3}


def test_an_added_file_reruns_the_data_stages(local_run):
    with restored(local_run[1] / "doc99.txt") as new:
        new.write_text(fake_document(random.Random(2), 40), encoding="utf-8")
        assert dry_run(local_run) == DATA_JOBS
    assert dry_run(local_run) == {}


def test_an_edited_file_reruns_the_data_stages(local_run):
    with restored(local_run[1] / "doc03.txt") as doc:  # written now: newer than every output of the run
        doc.write_text(doc.read_text(encoding="utf-8") + "\nA line added later.\n", encoding="utf-8")
        assert dry_run(local_run) == DATA_JOBS
    assert dry_run(local_run) == {}


def test_a_removed_file_reruns_the_data_stages(local_run):
    with restored(local_run[1] / "doc05.txt") as doc:
        doc.unlink()
        assert dry_run(local_run) == DATA_JOBS
    assert dry_run(local_run) == {}


def test_a_file_the_globs_exclude_changes_nothing(local_run):
    (local_run[1] / "notes.md").write_text("edited, still excluded", encoding="utf-8")
    assert dry_run(local_run) == {}


def test_any_file_name_works_even_those_snakemake_reads_as_patterns(tmp_path):
    """`{braces}` gave a WildcardError and `<b>` an undefined pathvar before any job ran."""
    corpus = tmp_path / "corpus"
    names = ["with {braces} lear.txt", "<b>old.txt", "{{double}}.txt", "star*and?[x].txt", "ünïcode & spaces.txt"]
    rng = random.Random(4)
    for sub, name in enumerate(names):
        (corpus / f"d{{{sub}}}").mkdir(parents=True)
        (corpus / f"d{{{sub}}}" / name).write_text(fake_document(rng, 20), encoding="utf-8")
    config = tiny_config(None, None)
    config["sources"] = {"mine": {"path": str(corpus)}}
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake(tmp_path, "results/docs/mine/stats.json", configfile=configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ids = sorted(
        json.loads(line)["id"]
        for part in (tmp_path / "results" / "docs" / "mine").glob("reader-*/part-*.jsonl")
        for line in open(part)
    )
    assert ids == sorted(f"mine/d{{{sub}}}/{name}" for sub, name in enumerate(names))
    assert planned_jobs(snakemake(tmp_path, "-n", "results/docs/mine/stats.json", configfile=configfile)) == {}


def test_a_path_matching_no_file_fails_before_any_job_naming_the_source(tmp_path):
    config = tiny_config(None, None)
    config["sources"] = {"mine": {"path": str(tmp_path / "nowhere" / "*.txt")}}
    result = snakemake(tmp_path, "-n", "results/report.html", configfile=write_config(tmp_path / "config.yaml", config))
    assert result.returncode != 0
    assert "source 'mine'" in result.stdout + result.stderr and "matches no file" in result.stdout + result.stderr


def test_a_split_too_small_for_a_model_fails_at_the_manifest_before_any_training(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = random.Random(3)
    for i in range(6):
        (corpus / f"doc{i}.txt").write_text(fake_document(rng, 30), encoding="utf-8")
    config = tiny_config(None, None)
    config["sources"] = {"few": {"path": str(corpus)}}
    config["splits"] = {"validation": 0.3, "test": 0.01, "salt": "x"}
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake(tmp_path, "results/report.html", configfile=configfile)
    assert result.returncode != 0
    log = (tmp_path / "logs" / "shards_manifest" / "tok.log").read_text(encoding="utf-8")
    assert "tokenizer 'tok': the test split holds 0 tokens in 0 of the 6 documents that cleaning and dedup kept" in log
    assert "model 'a' needs at least context_length + 1 = 33 tokens" in log and "splits.test" in log
    assert not (tmp_path / "logs" / "train").exists() and not (tmp_path / "results" / "models").exists()
