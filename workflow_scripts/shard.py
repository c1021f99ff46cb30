"""Encode one part into one .npy shard per split."""

import time

from lmcore.data.memory import check_document_memory
from lmcore.data.splits import SPLITS
from lmcore.io import write_json
from lmcore.tokens.shards import shard_part
from lmcore.tokens.tokenizer import Tokenizer
from lmcore.workflow.joblog import data_rate, redirect_output

redirect_output(snakemake.log[0])
check_document_memory(snakemake.input.docs, "shard", snakemake.resources.mem_mb)
start = time.perf_counter()
out = dict(zip(SPLITS, snakemake.output.shards))
stats = shard_part(
    snakemake.input.docs, Tokenizer(snakemake.input.tokenizer), snakemake.params.splits, out, snakemake.threads
)
write_json(snakemake.output.stats, {"stats": stats, "shards": out})
print(f"tokens per split { ({s: stats[s]['tokens'] for s in SPLITS}) }; read {data_rate(snakemake.input.docs, start)}")
