"""Exact keys and MinHash signatures of one part."""

import time

from lmcore.data.dedup import signatures
from lmcore.data.memory import check_document_memory
from lmcore.workflow.joblog import data_rate, redirect_output

redirect_output(snakemake.log[0])
check_document_memory(snakemake.input.docs, "dedup_signatures", snakemake.resources.mem_mb)
start = time.perf_counter()
o = snakemake.output
n = signatures(snakemake.input.docs, o.json, o.npy, o.bands, snakemake.params.dedup)
print(f"{n:,} documents; read {data_rate(snakemake.input.docs, start)}")
