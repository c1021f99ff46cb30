"""What the tests share: a tiny corpus they write themselves, a local HTTP server, a tiny config,
a Snakemake runner, a tokenizer trainer and model folders of each exported family. Fixtures built
from these live in conftest.py."""

import contextlib
import functools
import hashlib
import http.server
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import threading

import torch
import yaml

from lmcore.data.splits import SPLITS
from lmcore.io import write_jsonl
from lmcore.model.config import ModelConfig
from lmcore.model.folder import save_model
from lmcore.model.gpt import GPT
from lmcore.tokens.shards import shard_part, write_manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(REPO, "schemas", "config.schema.yaml")

WORDS = (
    "the king queen lord lady love death night day heart blood crown sword sweet fair foul good "
    "noble honour grace time world life eyes heaven earth soul tongue hand speak hear come go "
    "make thee thou thy my your our his her their what why how when where now then here there and of to with"
).split()


def fake_document(rng, n_lines):
    """Verse-like text: a speaker, then lines of words with punctuation."""
    lines = []
    for _ in range(n_lines):
        if rng.random() < 0.15:
            lines.append("\n" + rng.choice(["ROMEO", "JULIET", "HAMLET", "KING", "QUEEN"]) + ":")
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        lines.append(" ".join(words).capitalize() + rng.choice([",", ".", ";", "!", "?"]))
    return "\n".join(lines) + "\n"


def write_corpus_archive(path, n_docs=60, seed=0):
    """A tar.gz of `n_docs` text files, an exact copy of one, a file cleaning drops, and one the include glob drops."""
    rng = random.Random(seed)
    docs = {f"corpus/texts/doc{i:03d}.txt": fake_document(rng, rng.randint(40, 90)) for i in range(n_docs)}
    docs["corpus/texts/copy_of_doc000.txt"] = docs["corpus/texts/doc000.txt"]
    docs["corpus/texts/short.txt"] = "<script>alert(1)</script> is too short to keep"
    docs["corpus/README.md"] = "not a document"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in sorted(docs.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@contextlib.contextmanager
def serve(root=None, handler=None):
    """Serve the folder `root` (or answer with `handler`, a request handler class) on 127.0.0.1; yields the base URL."""
    handler = handler or functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def tiny_config(url, sha256):
    return {
        "sources": {
            "fake": {"url": url, "sha256": sha256, "include": ["corpus/texts/*.txt"], "documents": "file", "parts": 2}
        },
        "clean": {"min_chars": 100, "min_words": 20},
        "splits": {"validation": 0.15, "test": 0.15},
        "tokenizers": {"tok": {"model_type": "bpe", "vocab_size": 320}},
        "model_defaults": {
            "tokenizer": "tok",
            "context_length": 32,
            "batch_size": 8,
            "max_steps": 80,
            "warmup_steps": 5,
            "lr": 0.01,
            "eval_interval": 20,
            "eval_batches": 2,
            "log_interval": 5,
            "checkpoint_interval": 20,
        },
        "models": {
            "a": {"d_model": 32, "n_layers": 1, "n_heads": 2},
            "b": {"d_model": 48, "n_layers": 2, "n_heads": 4, "position": "rope"},
        },
        "sampling": {"prompts": ["ROMEO:", "<script>alert(1)</script>"], "max_new_tokens": 12},
    }


# The jobs of the tiny config's data stages (two parts) and of its tokenizer and shards, in DAG order.
DATA_JOBS = {
    "download": 1,
    "ingest": 2,
    "ingest_stats": 1,
    "clean": 2,
    "dedup_signatures": 2,
    "dedup_pairs": 1,
    "dedup_clusters": 1,
    "dedup_apply": 2,
}
DECONTAMINATION_JOBS = {"eval_ngrams": 1, "decontaminate": 2}  # the next_line task's n-grams; each part checked
TOKEN_JOBS = {"train_tokenizer": 1, "eval_tokenizer": 1, "shard": 2, "shards_manifest": 1}


def jobs_from(first, jobs):
    """The jobs of `jobs` from the rule `first` on: what a change at that stage reruns of them."""
    names = list(jobs)
    return {name: jobs[name] for name in names[names.index(first) :]}


def tiny_entry(**changes):
    """tiny_config's model `a` as the train job gets it (defaults filled), in fp32, with `changes`."""
    from lmcore.config import prepare_config

    return {**prepare_config(tiny_config("file:///x", None), SCHEMA)["models"]["a"], "precision": "fp32", **changes}


def write_config(path, config):
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def snakemake_command(workdir, *args, configfile=None, checkout=REPO):
    """Snakemake on the Snakefile of `checkout` (this repository) in `workdir`, with 2 cores."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        os.path.join(checkout, "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    if configfile:  # last: --configfile takes every argument after it
        cmd += ["--configfile", str(configfile)]
    return cmd


def snakemake(workdir, *args, configfile=None, timeout=600, checkout=REPO, env=None):
    """Run Snakemake and wait; returns the CompletedProcess."""
    command = snakemake_command(workdir, *args, configfile=configfile, checkout=checkout)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def planned_jobs(result):
    """{rule: count} from the 'Job stats' table of a dry run; {} when nothing is to be done."""
    jobs, in_table = {}, False
    for line in result.stdout.splitlines() + result.stderr.splitlines():
        if line.startswith("Job stats:"):
            in_table, jobs = True, {}
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
                jobs[parts[0]] = int(parts[1])
            elif parts and parts[0] == "total":
                in_table = False
    return jobs


def documents(n=40, seed=0):
    """`n` fake documents with ids, for unit tests."""
    rng = random.Random(seed)
    return [{"id": f"doc{i}", "text": fake_document(rng, 50)} for i in range(n)]


def make_shards(tmp_path, tok, docs):
    """One part of `docs` sharded with `tok` into tmp_path, with its manifest.json."""
    write_jsonl(tmp_path / "part.jsonl", docs)
    fractions = {"validation": 0.2, "test": 0.2}
    out = {s: str(tmp_path / f"{s}.npy") for s in SPLITS}
    stats = shard_part(tmp_path / "part.jsonl", tok, fractions, out, num_threads=2, batch_docs=7)
    write_manifest(
        tmp_path / "manifest.json", tok, [{"name": "part", "source": "corpus", "stats": stats, "shards": out}]
    )
    return stats, out


def train_tokenizer(path, model_type="bpe", vocab_size=400, docs=None, **options):
    """A SentencePiece model trained on `docs` (default: documents()) at `path`, loaded."""
    from lmcore.tokens import tokenizer

    cfg = {
        "model_type": model_type,
        "vocab_size": vocab_size,
        "character_coverage": 1.0,
        "byte_fallback": True,
        "input_sentence_size": 0,
        **options,
    }
    tokenizer.train(documents() if docs is None else docs, path, cfg)
    return tokenizer.Tokenizer(path)


FAMILIES = {
    "llama-untied": {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False},
    "llama-tied": {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": True},
    "llama-bias": {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": True, "tie_embeddings": False},
    "gpt2-tied": {"norm": "layernorm", "position": "learned", "mlp": "gelu", "bias": True, "tie_embeddings": True},
    "gpt2-untied": {"norm": "layernorm", "position": "learned", "mlp": "gelu", "bias": True, "tie_embeddings": False},
    "gpt2-tanh": {"norm": "layernorm", "position": "learned", "mlp": "gelu_tanh", "bias": True, "tie_embeddings": True},
    "qwen3-untied": {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "qk_norm": True,
                     "tie_embeddings": False},
    "qwen3-tied": {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "qk_norm": True,
                   "tie_embeddings": True},
}  # fmt: skip
MIXED_TEXT = (
    "ROMEO:\n  Two  spaces,\ttabs\t\tand\n\n\nnewlines; emoji 😀, CJK 漢字, é, 1234 and a lower block \u2581 too.  "
)


def trained_folder(tmp_path, tokenizer, options, seed=0):
    """A model folder as training writes it, with random weights (the layouts do not care whether they were trained)."""
    torch.manual_seed(seed)
    model = GPT(
        ModelConfig(
            **{
                "vocab_size": tokenizer.vocab_size,
                "d_model": 32,
                "n_layers": 2,
                "n_heads": 4,
                "context_length": 24,
                **options,
            }
        )
    )
    with torch.no_grad():  # norms and biases away from their initial 1 and 0, so that a mix-up shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path / "model"
    save_model(folder, model, {"tokenizer": "t"}, tokenizer.path, [], {})
    return folder


def exported_family(family, tmp_path, tokenizer, export, name):
    """(model folder, what `export` wrote to tmp_path / name) for one of FAMILIES, whose architecture the
    export must name."""
    folder = trained_folder(tmp_path, tokenizer, FAMILIES[family])
    assert export(folder, tmp_path / name) == family.split("-")[0]
    return folder, tmp_path / name


CHAT_WORDS = "the king and queen of england say that no man shall speak of what he saw".split()


def conversations(n, seed=0):
    """n conversations of one to three exchanges, half with a system message, some with newlines and spaces
    at a content's ends and text of every script. (transformers and llama.cpp read a marker spelled inside a
    message as the marker, lmcore as the characters: the one place their ids differ.)"""
    rng = random.Random(seed)

    def text():
        words = " ".join(rng.choice(CHAT_WORDS) for _ in range(rng.randint(1, 12)))
        return rng.choice([words, words + "\n", "  " + words, words + " <|> " + words, MIXED_TEXT[:30]])

    out = []
    for i in range(n):
        messages = [{"role": "system", "content": text()}] if i % 2 else []
        for _ in range(rng.randint(1, 3)):
            messages += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        out.append(messages)
    return out


def chat_shards(tmp_path, tok, n=60):
    """(documents, stats): `n` of `conversations` sharded with `tok` into tmp_path, as make_shards does."""
    docs = [{"id": f"c{i}", "text": "", "messages": m} for i, m in enumerate(conversations(n, seed=4))]
    stats, _ = make_shards(tmp_path, tok, docs)
    return docs, stats


def chat_folder(tmp_path, tokenizer):
    """A model folder of a chat model (`loss: assistant`) with random weights."""
    folder = trained_folder(tmp_path, tokenizer, FAMILIES["llama-tied"])
    config = json.loads((folder / "config.json").read_text())
    config["train"]["loss"] = "assistant"
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def resumes_exactly(entry, tokenizer_path, manifest, tmp_path, resumed_at):
    """Train `entry` once, remove its newest checkpoint (as if killed after the one before), train again
    from the checkpoints, and check the two runs end with the same weights; the first run's folder."""
    from lmcore.model.folder import load_safetensors
    from lmcore.train.checkpoint import list_checkpoints
    from lmcore.train.config import TrainJob
    from lmcore.train.loop import train

    train(TrainJob(entry, tokenizer_path, manifest, tmp_path / "once", tmp_path / "ck"), log=lambda *a: None)
    os.remove(list_checkpoints(tmp_path / "ck")[-1])
    lines = []
    train(TrainJob(entry, tokenizer_path, manifest, tmp_path / "resumed", tmp_path / "ck"), log=lines.append)
    assert f"Resumed from step {resumed_at}" in lines
    once, resumed = (load_safetensors(tmp_path / d / "model.safetensors") for d in ("once", "resumed"))
    assert all(torch.equal(once[k], resumed[k]) for k in once)
    return tmp_path / "once"
