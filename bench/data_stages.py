"""The data stages at scale, run by Snakemake as a user runs them: a generated corpus of `--size`
(8 files of `--format` jsonl, jsonl.zst or parquet; 10% duplicates, half of them edited) through
download, ingest, clean, dedup (signatures, pairs, clusters, apply), tokenizer training and
evaluation, and sharding, in `--parts` parts on `--cores` cores. Per stage, from Snakemake's own
benchmark files: jobs, MB read per job, MB/s per core (a job's input over its wall time x its
threads) and the largest peak memory of any of its jobs; then the whole run's wall time.

    python bench/data_stages.py [--size 100MB] [--format jsonl] [--parts 8] [--cores 2] [--work /tmp/bench-data]

Every job reads one part or one share of the files, so its memory should stay flat as the corpus
grows; dedup_clusters grows with the duplicates, and tokenizer training with its sample, up to
`max_training_chars`. Compare two sizes.
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
import zstandard

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_name, snakemake_command, write_corpus  # noqa: E402
from ingest_memory import write_parquet  # noqa: E402
from lmcore.workflow.joblog import disk_bytes  # noqa: E402

FILES = 8  # corpus files
# stage -> (what one job reads, given its benchmark file's wildcards), in pipeline order
STAGES = {
    "download": lambda run, w: [os.path.join(run, "..", "corpus")],
    "ingest": lambda run, w: [f"{run}/results/docs/{w[0]}/{w[1]}"],  # what it wrote: its share
    "clean": lambda run, w: glob.glob(f"{run}/results/docs/{w[0]}/reader-*/{w[1]}.jsonl"),
    "dedup_signatures": lambda run, w: [f"{run}/results/clean/{w[0]}/{w[1]}.jsonl"],
    "dedup_pairs": lambda run, w: glob.glob(f"{run}/results/dedup/signatures/*/part-*.bands.npy"),
    "dedup_clusters": lambda run, w: glob.glob(f"{run}/results/dedup/pairs/*.npy"),
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


def write_corpus_files(corpus, size, fmt):
    """FILES files of the generated corpus in `fmt`; returns the number of documents."""
    documents = 0
    for k in range(FILES):
        jsonl = os.path.join(corpus, f"{k}.jsonl")
        documents += write_corpus(jsonl, size / FILES / 1e6, seed=k, duplicates=0.1)
        if fmt == "jsonl.zst":
            with open(jsonl, "rb") as src, open(jsonl + ".zst", "wb") as dst:
                zstandard.ZstdCompressor(threads=-1).copy_stream(src, dst)
            os.remove(jsonl)
        elif fmt == "parquet":
            write_parquet(jsonl, os.path.join(corpus, f"{k}.parquet"))
            os.remove(jsonl)
    return documents


def write_config(path, corpus, parts, cores, fmt):
    threads = {rule: {"threads": 1} for rule in STAGES}
    threads["train_tokenizer"] = {"threads": cores}  # SentencePiece trains on every thread; the only job then running
    config = {
        "sources": {"bench": {"path": corpus, "documents": {fmt.split(".")[0]: "text", "id": "id"}, "parts": parts}},
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
    parser.add_argument("--format", default="jsonl", choices=["jsonl", "jsonl.zst", "parquet"])
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", default="/tmp/bench-data")
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    corpus, run = os.path.join(work, "corpus"), os.path.join(work, "run")
    os.makedirs(corpus)
    os.makedirs(run)
    documents = write_corpus_files(corpus, size_bytes(args.size), args.format)
    config = os.path.join(work, "config.yaml")
    write_config(config, corpus, args.parts, args.cores, args.format)
    start = time.perf_counter()
    with open(os.path.join(work, "snakemake.log"), "w", encoding="utf-8") as log:
        targets = ["results/shards/bpe4k/manifest.json", "results/tokenizers/bpe4k/stats.json"]
        command = snakemake_command(run, "--cores", str(args.cores), *targets, configfile=config)
        subprocess.run(command, check=True, stdout=log, stderr=log)
    wall = time.perf_counter() - start

    print(f"{cpu_name()}, {time.strftime('%Y-%m-%d')}")
    print(
        f"{disk_bytes([corpus]) / 1e6:,.0f} MB of {args.format}, {documents:,} documents, {args.parts} parts, "
        f"{args.cores} cores"
    )
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
