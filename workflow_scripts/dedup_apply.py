"""One part without its duplicates."""
from lmcore.data.dedup import apply_clusters
from lmcore.io import redirect_output

redirect_output(snakemake.log[0])
print(apply_clusters(snakemake.input.docs, snakemake.input.clusters, snakemake.output[0]))
