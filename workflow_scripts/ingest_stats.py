"""One source's ingest statistics from its readers'; fails when the source yielded no document."""

import os

from lmcore.data.ingest import merge_stats, skipped_files
from lmcore.io import read_json, write_json
from lmcore.workflow.joblog import redirect_output, warn

redirect_output(snakemake.log[0])
readers = [read_json(os.path.join(d, "stats.json")) for d in snakemake.input.readers]
files = len(read_json(os.path.join(snakemake.input.raw, "manifest.json"))["files"])
stats = merge_stats(snakemake.wildcards.source, readers, files)
write_json(snakemake.output[0], stats)
if stats["skipped"]:
    warn(skipped_files(stats))
print(f"{stats['files']:,} files, {stats['documents']:,} documents, {stats['characters']:,} characters")
