"""Ingest's peak memory against the size of one file: a single JSON Lines file of `--jsonl-gb` and a
single parquet file of `--parquet-gb` (FineWeb-like rows, row groups of 1,000), each read by `--readers`
ingest jobs run one after another, each in its own process: the largest peak and the MB/s of one job.
Also the download step's pass over the file (sha256 and the line index that lets readers share it).

    python bench/ingest_memory.py [--jsonl-gb 5] [--parquet-gb 2] [--readers 8] [--work /tmp/bench-ingest]
"""

import argparse
import json
import os
import shutil
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_name, own_peak_mb, run_child, write_corpus  # noqa: E402
from lmcore.data import formats, ingest  # noqa: E402


def write_parquet(jsonl, path, rows_per_group=1000):
    """The JSON Lines corpus as parquet with FineWeb's text and id columns and an int_score."""
    writer, batch = None, []

    def flush():
        nonlocal writer
        table = pa.Table.from_pylist(batch)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=rows_per_group)
        batch.clear()

    with open(jsonl, encoding="utf-8") as f:
        for i, line in enumerate(f):
            doc = json.loads(line)
            batch.append({"text": doc["text"], "id": doc["id"], "int_score": i % 5})
            if len(batch) == rows_per_group:
                flush()
    if batch:
        flush()
    writer.close()


def child(args):
    entry = json.loads(args.entry)
    source = {"documents": json.loads(args.documents), "parts": args.readers}
    parts = [os.path.join(args.work, f"out-{args.reader}-{j}.jsonl") for j in range(args.readers)]
    start = time.perf_counter()
    stats = ingest.ingest("bench", args.work, {"files": [entry]}, source, args.reader, args.readers, parts)
    seconds = time.perf_counter() - start
    written = sum(os.path.getsize(p) for p in parts)
    for p in parts:
        os.remove(p)
    print(
        json.dumps({"seconds": seconds, "documents": stats["documents"], "written": written, "peak_mb": own_peak_mb()})
    )


def measure(work, name, documents, readers):
    path = os.path.join(work, name)
    start = time.perf_counter()
    sha, lines = formats.line_index(path)
    index_s = time.perf_counter() - start
    entry = {"path": name, "bytes": os.path.getsize(path), "lines": lines}
    peaks, times, docs = [], [], 0
    for r in range(readers):
        out, peak = run_child(
            [__file__, "--child", "--work", work, "--entry", json.dumps(entry), "--documents", json.dumps(documents)]
            + ["--reader", str(r), "--readers", str(readers)]
        )
        peaks.append(peak)
        times.append(out["seconds"])
        docs += out["documents"]
    size = entry["bytes"] / 1e6
    print(
        f"{name}: {size:,.0f} MB, {docs:,} documents, {readers} ingest jobs: peak {max(peaks):,.0f} MB at most "
        f"(smallest {min(peaks):,.0f}); {size / sum(times):.1f} MB/s per job; download's sha256 and line index "
        f"{size / index_s:,.0f} MB/s"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jsonl-gb", type=float, default=5)
    parser.add_argument("--parquet-gb", type=float, default=2)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--work", default="/tmp/bench-ingest")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--entry")
    parser.add_argument("--documents")
    parser.add_argument("--reader", type=int)
    args = parser.parse_args()
    if args.child:
        return child(args)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    print(f"{cpu_name()}, {time.strftime('%Y-%m-%d')}")
    write_corpus(os.path.join(args.work, "big.jsonl"), args.jsonl_gb * 1000)
    measure(args.work, "big.jsonl", {"jsonl": "text", "id": "id"}, args.readers)
    if args.parquet_gb:
        write_corpus(os.path.join(args.work, "p.jsonl"), args.parquet_gb * 1000 * 2.1, seed=1)  # parquet: 0.47x
        write_parquet(os.path.join(args.work, "p.jsonl"), os.path.join(args.work, "big.parquet"))
        os.remove(os.path.join(args.work, "p.jsonl"))
        measure(args.work, "big.parquet", {"parquet": "text", "id": "id", "meta": ["int_score"]}, args.readers)


if __name__ == "__main__":
    main()
