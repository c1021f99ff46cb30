"""Throughput (MB/s) and peak memory of ingest, clean and minhash, at 1 and at 4 parts.

    python bench/data_stages.py [--megabytes 50] [--work /tmp/bench-data]

Each stage runs in its own process per part, as Snakemake runs it; the figures are the
slowest part's MB/s over that part's bytes, and the largest peak memory of any part.
Peak memory per part job must not grow with the corpus: compare the two rows.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import run_child, write_corpus  # noqa: E402

DEDUP = {"exact": True, "near": True, "ngram": 5, "bands": 10, "rows": 10, "threshold": 0.8, "seed": 0}


def clean_config():
    from lmcore.config import prepare_config

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = {"sources": {"s": {"path": "x"}}, "tokenizers": {"t": {}}, "models": {"m": {"tokenizer": "t", "d_model": 8, "n_layers": 1, "n_heads": 1}}}
    return prepare_config(config, os.path.join(repo, "schemas", "config.schema.yaml"))["clean"]


def worker(stage, src, dst, parts):
    from lmcore.data import clean, dedup, ingest

    cfg = clean_config() if stage == "clean" else DEDUP
    start = time.perf_counter()
    if stage == "ingest":
        manifest = {"files": [{"path": f} for f in sorted(os.listdir(os.path.join(src, "files")))]}
        ingest.ingest("bench", src, manifest, "file", [os.path.join(dst, f"part-{k}.jsonl") for k in range(int(parts))])
    elif stage == "clean":
        clean.clean_part(src, dst, cfg)
    else:
        dedup.signatures(src, dst + ".json", dst + ".npy", cfg)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=50)
    parser.add_argument("--work", default="/tmp/bench-data")
    parser.add_argument("--worker", nargs=4, metavar=("STAGE", "SRC", "DST", "PARTS"))
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)

    from lmcore.io import read_jsonl

    raw = os.path.join(args.work, "raw")
    os.makedirs(os.path.join(raw, "files"), exist_ok=True)
    corpus = os.path.join(args.work, "corpus.jsonl")
    write_corpus(corpus, args.megabytes)
    for i, doc in enumerate(read_jsonl(corpus)):  # one file per document, as a folder source would give
        with open(os.path.join(raw, "files", f"{i:06d}.txt"), "w", encoding="utf-8") as f:
            f.write(doc["text"])
    print(f"{'stage':>8} {'parts':>5} {'MB/part':>8} {'MB/s':>7} {'peak MB':>8}")
    for parts in (1, 4):
        docs = os.path.join(args.work, f"docs{parts}")
        os.makedirs(docs, exist_ok=True)
        size = sum(os.path.getsize(os.path.join(raw, "files", f)) for f in os.listdir(os.path.join(raw, "files")))
        result, peak = run_child([__file__, "--worker", "ingest", raw, docs, str(parts)])
        print(f"{'ingest':>8} {parts:5d} {size / 1e6:8.1f} {size / 1e6 / result['seconds']:7.2f} {peak:8.0f}", flush=True)
        for stage in ("clean", "minhash"):
            rates, peaks = [], []
            for k in range(parts):
                src = os.path.join(docs, f"part-{k}.jsonl")
                result, peak = run_child([__file__, "--worker", stage, src, os.path.join(docs, f"{stage}-{k}.out"), str(parts)])
                rates.append(os.path.getsize(src) / 1e6 / result["seconds"])
                peaks.append(peak)
            mb = os.path.getsize(os.path.join(docs, "part-0.jsonl")) / 1e6
            print(f"{stage:>8} {parts:5d} {mb:8.1f} {min(rates):7.2f} {max(peaks):8.0f}", flush=True)


if __name__ == "__main__":
    main()
