"""One source's corpus statistics: length distributions, languages, domains, drops (lmcore.data.stats)."""

from lmcore.data.stats import median_bin, source_stats
from lmcore.io import read_json, write_json
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
stats = source_stats(snakemake.wildcards.source, [read_json(p) for p in snakemake.input.clean])
write_json(snakemake.output[0], stats)
kept = stats["shape"]["out"]
median = median_bin(kept["chars"]) if kept else None
print(
    f"{stats['documents_out']:,} of {stats['documents_in']:,} documents kept; the median kept has {median} characters"
)
