"""The hashes of one part's paragraphs, of the documents MinHash kept."""

from lmcore.data.paragraphs import paragraph_hashes
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
n = paragraph_hashes(
    snakemake.input.docs, snakemake.input.clusters, snakemake.output[0], snakemake.params.paragraphs["min_chars"]
)
print(f"{n:,} paragraphs")
