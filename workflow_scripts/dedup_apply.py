"""One part without its duplicates."""

import time

from lmcore.data.dedup import apply_clusters
from lmcore.workflow.joblog import data_rate, redirect_output

redirect_output(snakemake.log[0])
start = time.perf_counter()
counts = apply_clusters(snakemake.input.docs, snakemake.input.clusters, snakemake.output[0])
print(
    f"kept {counts['kept']:,} documents, removed {counts['removed']:,} duplicates; read "
    f"{data_rate(snakemake.input.docs, start)}"
)
