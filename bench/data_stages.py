"""The data stages at scale, run by Snakemake as a user runs them: a generated corpus of `--size`
(JSON Lines in 8 files, 10% duplicates, half of them edited) through download, ingest, clean,
dedup (signatures, clusters, apply), tokenizer training and evaluation, and sharding, in
`--parts` parts on `--cores` cores. Per stage, from Snakemake's own benchmark files: jobs,
MB read per job, MB/s per core (a job's input over its wall time x its threads) and the largest
peak memory of any of its jobs; then the whole run's wall time.

    python bench/data_stages.py [--size 100MB] [--parts 8] [--cores 2] [--work /tmp/bench-data]

Part jobs read one part each, so their memory should stay flat as the corpus grows; the one
dedup_clusters job grows with the number of documents (lmcore/data/dedup.py says by how much),
and tokenizer training with its sample, up to `max_training_chars`. Compare two sizes.
"""

import argparse
import csv
import glob
import os
import shutil
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import snakemake_command, write_corpus  # noqa: E402
from lmcore.logs import disk_bytes  # noqa: E402

FILES = 8  # corpus files
# stage -> (what one job reads, given its benchmark file's wildcards), in pipeline order
STAGES = {
    "download": lambda run, w: [os.path.join(run, "..", "corpus")],
    "ingest": lambda run, w: [f"{run}/results/raw/{w[0]}"],
    "clean": lambda run, w: [f"{run}/results/docs/{w[0]}/{w[1]}.jsonl"],
    "dedup_signatures": lambda run, w: [f"{run}/results/clean/{w[0]}/{w[1]}.jsonl"],
    "dedup_clusters": lambda run, w: glob.glob(f"{run}/results/clean/*/part-*.jsonl"),
    "dedup_apply": lambda run, w: [f"{run}/results/clean/{w[0]}/{w[1]}.jsonl"],
    "train_tokenizer": lambda run, w: glob.glob(f"{run}/results/dedup/*/part-*.jsonl"),
    "eval_tokenizer": lambda run, w: glob.glob(f"{run}/results/dedup/*/part-*.jsonl"),
    "shard": lambda run, w: [f"{run}/results/dedup/{w[1]}/{w[2]}.jsonl"],
}


def size_bytes(text):
    units = {"KB": 1e3, "MB": 1e6, "GB": 1e9}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def write_config(path, corpus, parts, cores):
    threads = {rule: {"threads": 1} for rule in STAGES}
    threads["train_tokenizer"] = {"threads": cores}  # SentencePiece trains on every thread; the only job then running
    config = {
        "sources": {"bench": {"path": corpus, "documents": {"jsonl": "text"}, "parts": parts}},
        "dedup": {"exact": True, "near": True},
        "tokenizers": {"bpe4k": {"model_type": "bpe", "vocab_size": 4096}},
        "models": {
            "unused": {"tokenizer": "bpe4k", "d_model": 16, "n_layers": 1, "n_heads": 1}
        },  # a config names a model
        "resources": threads,
    }
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="100MB", help="corpus size: 100MB, 1GB, ...")
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", default="/tmp/bench-data")
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    corpus, run = os.path.join(work, "corpus"), os.path.join(work, "run")
    os.makedirs(corpus)
    os.makedirs(run)
    documents = sum(
        write_corpus(os.path.join(corpus, f"{k}.jsonl"), size_bytes(args.size) / FILES / 1e6, seed=k, duplicates=0.1)
        for k in range(FILES)
    )
    config = os.path.join(work, "config.yaml")
    write_config(config, corpus, args.parts, args.cores)
    start = time.perf_counter()
    with open(os.path.join(work, "snakemake.log"), "w", encoding="utf-8") as log:
        targets = ["results/shards/bpe4k/manifest.json", "results/tokenizers/bpe4k/stats.json"]
        command = snakemake_command(run, "--cores", str(args.cores), *targets, configfile=config)
        subprocess.run(command, check=True, stdout=log, stderr=log)
    wall = time.perf_counter() - start

    print(f"{disk_bytes([corpus]) / 1e6:,.0f} MB, {documents:,} documents, {args.parts} parts, {args.cores} cores")
    print(f"{'stage':>16} {'jobs':>4} {'MB/job':>7} {'MB/s/core':>9} {'s (slowest)':>11} {'peak MB':>8}")
    for stage, reads in STAGES.items():
        rows = []
        for tsv in sorted(
            glob.glob(f"{run}/benchmarks/{stage}/**/*.tsv", recursive=True) + glob.glob(f"{run}/benchmarks/{stage}.tsv")
        ):
            wildcards = os.path.relpath(tsv, f"{run}/benchmarks/{stage}")[: -len(".tsv")].split(os.sep)
            with open(tsv, encoding="utf-8") as f:
                bench = next(csv.DictReader(f, delimiter="\t"))
            threads = 1 if stage != "train_tokenizer" else args.cores
            rows.append((disk_bytes(reads(run, wildcards)), float(bench["s"]), threads, float(bench["max_rss"])))
        if not rows:
            continue
        mb = sum(r[0] for r in rows) / 1e6
        rate = mb / sum(r[1] * r[2] for r in rows)
        print(
            f"{stage:>16} {len(rows):4d} {mb / len(rows):7.1f} {rate:9.2f} {max(r[1] for r in rows):11.1f} "
            f"{max(r[3] for r in rows):8.0f}"
        )
    print(f"whole run: {wall:.0f} s wall on {args.cores} cores ({os.path.join(work, 'run')})")


if __name__ == "__main__":
    main()
