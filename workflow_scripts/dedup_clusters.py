"""Duplicate clusters over every part; the smallest id of each survives."""

from lmcore.data.dedup import find_clusters
from lmcore.logs import redirect_output

redirect_output(snakemake.log[0])
print(find_clusters(snakemake.input.json, snakemake.input.npy, snakemake.output[0], snakemake.params.dedup))
