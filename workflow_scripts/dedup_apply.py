"""One part without its duplicates, and, where dedup.paragraphs is on, without its repeated paragraphs."""

import time

from lmcore.data.dedup import apply_clusters
from lmcore.data.paragraphs import ParagraphEdit
from lmcore.io import write_json
from lmcore.workflow.joblog import data_rate, redirect_output

redirect_output(snakemake.log[0])
start = time.perf_counter()
paragraphs = snakemake.params.paragraphs
edit = (
    ParagraphEdit(snakemake.input.paragraphs, snakemake.params.part_number, paragraphs["max_share"])
    if paragraphs["enabled"]
    else None
)
counts = apply_clusters(snakemake.input.docs, snakemake.input.clusters, snakemake.output.docs, edit)
stats = {**counts, "paragraphs": edit.stats if edit else None}
write_json(snakemake.output.stats, stats)
print(f"{stats}; read {data_rate(snakemake.input.docs, start)}")
