"""One part's documents that every filter of its source keeps, with their scores in meta."""

from lmcore.data.quality import apply_filter
from lmcore.io import write_json
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
stats = apply_filter(snakemake.input.docs, snakemake.input.scores, snakemake.input.thresholds, snakemake.output.docs)
write_json(snakemake.output.stats, stats)
print(f"{stats['kept']:,} of {stats['documents']:,} documents kept; dropped: {stats['dropped']}")
