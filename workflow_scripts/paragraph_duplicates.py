"""The paragraphs of one key range that repeat an earlier one, from every part."""

from lmcore.data.paragraphs import duplicate_paragraphs
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
key_range = int(snakemake.wildcards.range)
n, repeats = duplicate_paragraphs(snakemake.input, snakemake.output[0], key_range, snakemake.params.key_ranges)
print(f"{n:,} paragraphs in key range {key_range}, {repeats:,} of them repeats")
