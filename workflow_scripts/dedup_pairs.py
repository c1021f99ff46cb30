"""The duplicate pairs one band group finds in one range of keys, over every part."""

from lmcore.data.dedup import candidate_pairs
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
w = snakemake.wildcards
n = candidate_pairs(
    snakemake.input.bands, snakemake.input.npy, snakemake.output[0], int(w.group), int(w.range), snakemake.params.dedup
)
print(f"band group {w.group}, key range {w.range}: {n:,} duplicate pairs")
