"""Duplicate clusters from every band group's pairs; the smallest id of each survives."""

from lmcore.data.dedup import find_clusters
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
i = snakemake.input
print(find_clusters(i.pairs, i.json, i.npy, snakemake.output[0], snakemake.params.dedup))
