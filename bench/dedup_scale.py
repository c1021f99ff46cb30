"""Dedup's global steps at corpus scale, on synthetic signatures: `--documents` (10 M by default) in
`--parts` parts, 1% of them copies of an earlier document, written as dedup_signatures writes them
(sorted band keys, a signature matrix, ids). Then every candidate-pair job (band groups x key ranges)
and the clusters job run one after another, each in its own process: wall time and peak memory per job.

    python bench/dedup_scale.py [--documents 10000000] [--parts 16] [--key-ranges 1 4] [--work /tmp/bench-dedup]

The signature files are sparse: only the duplicated documents' rows are written (the pair jobs read
a signature only for documents that share a key), so 10 M documents take about 2 GB of disk.
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_name, own_peak_mb, run_child  # noqa: E402
from lmcore.data import dedup  # noqa: E402

CFG = {"exact": True, "near": True, "ngram": 5, "bands": 10, "rows": 10, "threshold": 0.8, "seed": 0}


def write_parts(work, documents, parts, duplicates=0.01, seed=0):
    """Part files as dedup_signatures writes them; a share `duplicates` of documents copy an earlier one."""
    rng = np.random.default_rng(seed)
    width = CFG["bands"] * CFG["rows"]
    keys = rng.integers(0, 2**63, (documents, CFG["bands"] + 1), dtype=np.uint64) * np.uint64(2)
    copies = rng.choice(np.arange(1000, documents), int(documents * duplicates), replace=False)
    originals = rng.integers(0, 1000, len(copies))  # some documents are copied many times, as boilerplate is
    keys[copies] = keys[originals]
    signatures = rng.integers(0, 2**63, (1000, width), dtype=np.uint64)
    per_part = -(-documents // parts)
    for k in range(parts):
        lo, hi = k * per_part, min((k + 1) * per_part, documents)
        n = hi - lo
        out = np.lib.format.open_memmap(
            f"{work}/p{k}.bands.npy", mode="w+", dtype=np.uint64, shape=(CFG["bands"] + 1, n, 2)
        )
        for band in range(CFG["bands"] + 1):
            order = np.argsort(keys[lo:hi, band], kind="stable")
            out[band, :, 0], out[band, :, 1] = keys[lo:hi, band][order], order
        del out
        sig = np.lib.format.open_memmap(f"{work}/p{k}.npy", mode="w+", dtype=np.uint64, shape=(n, width))
        mine = (copies >= lo) & (copies < hi)
        sig[copies[mine] - lo] = signatures[originals[mine]]
        first = np.arange(lo, min(hi, 1000))
        sig[first - lo] = signatures[first]
        del sig
        with open(f"{work}/p{k}.json", "w") as f:
            json.dump(
                {
                    "ids": [f"d{i:010d}" for i in range(lo, hi)],
                    "keys": [f"{i:032x}" for i in range(lo, hi)],
                    "chars": [1000] * n,
                },
                f,
            )
    return len(copies)


def child(args):
    cfg = json.loads(args.cfg)
    parts = [f"{args.work}/p{k}" for k in range(args.parts)]
    start = time.perf_counter()
    if args.child == "pairs":
        n = dedup.candidate_pairs(
            [p + ".bands.npy" for p in parts], [p + ".npy" for p in parts], args.out, args.group, args.range, cfg
        )
    else:
        pairs = sorted(os.path.join(args.work, f) for f in os.listdir(args.work) if f.startswith("pairs-"))
        n = dedup.find_clusters(pairs, [p + ".json" for p in parts], [p + ".npy" for p in parts], args.out, cfg)[
            "documents_removed"
        ]
    print(json.dumps({"seconds": time.perf_counter() - start, "n": n, "peak_mb": own_peak_mb()}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=10_000_000)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--key-ranges", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--work", default="/tmp/bench-dedup")
    parser.add_argument("--child")
    parser.add_argument("--cfg")
    parser.add_argument("--out")
    parser.add_argument("--group", type=int)
    parser.add_argument("--range", type=int)
    args = parser.parse_args()
    if args.child:
        return child(args)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    start = time.perf_counter()
    copies = write_parts(args.work, args.documents, args.parts)
    seconds = time.perf_counter() - start
    print(f"{cpu_name()}; {args.documents:,} documents in {args.parts} parts, {copies:,} copies ({seconds:.0f} s)")
    for ranges in args.key_ranges:
        cfg = {**CFG, "band_groups": 1, "key_ranges": ranges}
        for f in os.listdir(args.work):
            if f.startswith("pairs-"):
                os.remove(os.path.join(args.work, f))
        command = [__file__, "--work", args.work, "--parts", str(args.parts), "--cfg", json.dumps(cfg), "--child"]
        peaks, times = [], []
        for r in range(ranges):
            pairs = ["--out", f"{args.work}/pairs-{r}.npy", "--group", "0", "--range", str(r)]
            out, peak = run_child(command + ["pairs"] + pairs)
            peaks.append(peak)
            times.append(out["seconds"])
        out, peak = run_child(command + ["clusters", "--out", f"{args.work}/clusters.json"])
        print(
            f"key_ranges {ranges}: {ranges} pair jobs, each {max(times):.0f} s at most (all {sum(times):.0f} s), "
            f"peak {max(peaks):,.0f} MB; "
            f"clusters job {out['seconds']:.0f} s, peak {peak:,.0f} MB, {out['n']:,} documents removed"
        )


if __name__ == "__main__":
    main()
