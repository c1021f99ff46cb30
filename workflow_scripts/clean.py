"""Normalise and filter one part of documents, read from every ingest reader's file of it."""

import os
import time

from lmcore.data.clean import clean_part
from lmcore.data.memory import check_document_memory
from lmcore.io import write_json
from lmcore.workflow.joblog import data_rate, redirect_output

redirect_output(snakemake.log[0])
start = time.perf_counter()
docs = [os.path.join(reader, f"part-{snakemake.wildcards.part}.jsonl") for reader in snakemake.input.readers]
check_document_memory(docs, "clean", snakemake.resources.mem_mb)
stats = clean_part(docs, snakemake.output.docs, snakemake.params.clean, snakemake.params.corpus_ids)
write_json(snakemake.output.stats, stats)
print(
    f"kept {stats['documents_out']:,} of {stats['documents_in']:,} documents, dropped {stats['dropped']}; "
    f"read {data_rate(docs, start)}"
)
