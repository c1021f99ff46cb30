"""Normalise and filter one part of documents."""
import os

from lmcore.data.clean import clean_part
from lmcore.io import redirect_output, write_json

redirect_output(snakemake.log[0])
docs = os.path.join(snakemake.input.docs, f"part-{snakemake.wildcards.part}.jsonl")
stats = clean_part(docs, snakemake.output.docs, snakemake.params.clean)
write_json(snakemake.output.stats, stats)
print(stats)
