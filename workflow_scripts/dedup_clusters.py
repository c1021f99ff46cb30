"""Duplicate clusters over every part; the smallest id of each survives."""
from lmcore.data.dedup import find_clusters
from lmcore.io import redirect_output

redirect_output(snakemake.log[0])
print(find_clusters(snakemake.input.signatures, snakemake.output[0], exact=snakemake.params.dedup["exact"]))
