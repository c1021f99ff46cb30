"""Peak memory of the per-document data stages (clean, dedup_signatures, shard) on one very long
document: what a job needs per byte of its longest document (lmcore.data.memory's factors).

    python bench/document_memory.py [--sizes 10 50] [--work /tmp/bench-document-memory]

Each stage runs in a child process on a part holding one document of each size; the table gives
its peak resident memory, and the memory above a part of small documents per byte of the document.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import own_peak_mb, run_child, write_corpus  # noqa: E402

STAGES = ("clean", "dedup_signatures", "shard")


def worker(stage, part, model, out_dir):
    from lmcore.config import prepare_config

    schema = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas", "config.schema.yaml")
    config = prepare_config(
        {
            "sources": {"s": {"path": "x"}},
            "tokenizers": {"t": {}},
            "models": {"m": {"tokenizer": "t", "d_model": 8, "n_layers": 1, "n_heads": 1}},
        },
        schema,
    )
    start = time.perf_counter()
    if stage == "clean":
        from lmcore.data.clean import clean_part

        clean_part(part, os.path.join(out_dir, "clean.jsonl"), config["clean"], warn=lambda *a: None)
    elif stage == "dedup_signatures":
        from lmcore.data.dedup import signatures

        signatures(part, os.path.join(out_dir, "sig.json"), os.path.join(out_dir, "sig.npy"), config["dedup"])
    else:
        from lmcore.data.splits import SPLITS
        from lmcore.tokens.shards import shard_part
        from lmcore.tokens.tokenizer import Tokenizer

        shard_part(
            part,
            Tokenizer(model),
            {"validation": 0.0, "test": 0.0},
            {s: os.path.join(out_dir, f"{s}.npy") for s in SPLITS},
        )
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": own_peak_mb()}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=float, nargs="+", default=[10, 50])
    parser.add_argument("--work", default="/tmp/bench-document-memory")
    parser.add_argument("--worker", nargs=4, metavar=("STAGE", "PART", "MODEL", "OUT"))
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)

    from lmcore.io import read_jsonl
    from lmcore.tokens import tokenizer

    os.makedirs(args.work, exist_ok=True)
    model = os.path.join(args.work, "spm.model")
    small = os.path.join(args.work, "small.jsonl")
    write_corpus(small, 2)
    tokenizer.train(
        read_jsonl(small),
        model,
        {
            "model_type": "bpe",
            "vocab_size": 1024,
            "character_coverage": 0.9995,
            "byte_fallback": True,
            "input_sentence_size": 200000,
        },
    )
    base = {stage: run_child([__file__, "--worker", stage, small, model, args.work])[0]["peak_mb"] for stage in STAGES}
    print(f"{'stage':<17} {'document MB':>11} {'seconds':>8} {'peak MB':>8} {'MB per document MB':>19}")
    for size in args.sizes:
        part = os.path.join(args.work, f"one-{size:g}MB.jsonl")
        write_corpus(
            part, size * 0.99, seed=1, words_per_doc=int(size * 1e6 / 5.3)
        )  # one document: about 5.3 bytes a word
        mb = os.path.getsize(part) / 1e6
        for stage in STAGES:
            result, peak = run_child([__file__, "--worker", stage, part, model, args.work])[0], None
            peak = result["peak_mb"]
            print(
                f"{stage:<17} {mb:11.1f} {result['seconds']:8.1f} {peak:8.0f} {(peak - base[stage]) / mb:19.1f}",
                flush=True,
            )
        os.remove(part)


if __name__ == "__main__":
    main()
