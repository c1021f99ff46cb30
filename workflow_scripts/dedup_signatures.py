"""Exact keys and MinHash signatures of one part."""
from lmcore.data.dedup import signatures
from lmcore.io import redirect_output

redirect_output(snakemake.log[0])
n = signatures(snakemake.input.docs, snakemake.output.json, snakemake.output.npy, snakemake.params.dedup)
print(f"{n} documents")
