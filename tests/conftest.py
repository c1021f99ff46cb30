"""Fixtures: one torch thread per test, a trained tokenizer and its shards, the tiny corpus, and
the tiny pipeline run once end to end. Helpers they are built from: tests/helpers.py."""

import os

import pytest
import torch

from helpers import (
    documents,
    make_shards,
    serve,
    snakemake,
    tiny_config,
    train_tokenizer,
    write_config,
    write_corpus_archive,
)


@pytest.fixture(autouse=True, scope="session")
def peak_cache(tmp_path_factory):
    """Training keeps the CPU's measured peak FLOP/s in $XDG_CACHE_HOME/lmcore: the tests' in their
    own folder, not the user's."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run one torch thread each: two cores shared by pytest and the subprocesses it starts
    are slower with more (oversubscription). A test about threads sets its own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bpe(tmp_path_factory):
    """A 400-piece BPE tokenizer trained on documents()."""
    return train_tokenizer(tmp_path_factory.mktemp("bpe") / "spm.model")


@pytest.fixture(scope="session")
def shards(tmp_path_factory, bpe):
    """(tokenizer path, manifest path): 60 documents sharded with `bpe`, 20% each for validation and test."""
    folder = tmp_path_factory.mktemp("shards")
    make_shards(folder, bpe, documents(60, seed=1))
    return str(bpe.path), str(folder / "manifest.json")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """(path, sha256) of the tiny corpus: write_corpus_archive's 60 documents and its traps, as a tar.gz."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.tar.gz"
    return path, write_corpus_archive(path)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, corpus):
    """The tiny pipeline run once, end to end, on `corpus` served from 127.0.0.1, with the corpus's own
    lm-eval task (as config.yaml's)."""
    work = tmp_path_factory.mktemp("run")
    path, sha = corpus
    with serve(path.parent) as base:
        config = {
            **tiny_config(f"{base}/{path.name}", sha),
            "evals": {"tasks": ["next_line"], "next_line": {"questions": 60, "max_chars": 25}},
        }
        configfile = write_config(work / "config.yaml", config)
        result = snakemake(work, "results/report.html", configfile=configfile)
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
        yield {"work": work, "config": config, "configfile": configfile}


def pytest_collection_modifyitems(items):
    """A test that needs the whole pipeline run is slow (`pytest -m "not slow"` leaves it out)."""
    for item in items:
        if "pipeline" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
