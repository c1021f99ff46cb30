"""Duplicate-detection signatures of one part."""
from lmcore.data.dedup import signatures
from lmcore.io import redirect_output

redirect_output(snakemake.log[0])
print(f"{signatures(snakemake.input.docs, snakemake.output[0])} documents")
