"""Encode throughput and peak memory of the `shard` stage.

    python bench/shards.py [--sizes 20 200] [--work /tmp/bench-shards]

Prints tokens/s and MB/s at 1 and 2 threads for parts of each size (MB of JSON Lines),
and the peak memory of each job: it must stay flat as the part grows.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import run_child, write_corpus  # noqa: E402


def worker(part, model, threads, out_dir):
    from lmcore.data.splits import SPLITS
    from lmcore.tokens.shards import shard_part
    from lmcore.tokens.tokenizer import Tokenizer

    start = time.perf_counter()
    out = {s: os.path.join(out_dir, f"{s}.npy") for s in SPLITS}
    stats = shard_part(part, Tokenizer(model), {"validation": 0.05, "test": 0.05}, out, num_threads=threads)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "tokens": sum(s["tokens"] for s in stats.values())}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=float, nargs="+", default=[20, 200])
    parser.add_argument("--work", default="/tmp/bench-shards")
    parser.add_argument("--worker", nargs=4, metavar=("PART", "MODEL", "THREADS", "OUT"))
    args = parser.parse_args()
    if args.worker:
        part, model, threads, out = args.worker
        return worker(part, model, int(threads), out)

    from lmcore.io import read_jsonl
    from lmcore.tokens import tokenizer

    os.makedirs(args.work, exist_ok=True)
    model = os.path.join(args.work, "spm.model")
    sample = os.path.join(args.work, "sample.jsonl")
    write_corpus(sample, 5)
    tokenizer.train(
        read_jsonl(sample),
        model,
        {
            "model_type": "bpe",
            "vocab_size": 4096,
            "character_coverage": 0.9995,
            "byte_fallback": True,
            "input_sentence_size": 200000,
        },
    )
    print(f"{'part MB':>8} {'threads':>7} {'seconds':>8} {'tokens/s':>10} {'MB/s':>6} {'peak MB':>8}")
    for size in args.sizes:
        part = os.path.join(args.work, f"part-{size:g}MB.jsonl")
        write_corpus(part, size, seed=1)
        mb = os.path.getsize(part) / 1e6
        for threads in (1, 2):
            result, peak = run_child([__file__, "--worker", part, model, str(threads), args.work])
            print(
                f"{mb:8.1f} {threads:7d} {result['seconds']:8.1f} {result['tokens'] / result['seconds']:10,.0f} "
                f"{mb / result['seconds']:6.2f} {peak:8.0f}",
                flush=True,
            )
        os.remove(part)


if __name__ == "__main__":
    main()
