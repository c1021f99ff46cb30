"""Fetch one source into results/raw/<source>/ (files/ + manifest.json), all or nothing."""

import os
import time

from lmcore.data.download import download_source
from lmcore.io import atomic_dir, write_json
from lmcore.workflow.joblog import data_rate, redirect_output

redirect_output(snakemake.log[0])
start = time.perf_counter()
name = snakemake.wildcards.source
cache = os.path.join(os.path.dirname(snakemake.output[0]), ".fetching", name)  # kept until every file has arrived
with atomic_dir(snakemake.output[0]) as tmp:
    manifest = download_source(name, snakemake.params.source, tmp, cache)
    write_json(os.path.join(tmp, "manifest.json"), manifest)
print(f"{name}: {len(manifest['files']):,} files; wrote {data_rate(snakemake.output[0], start)}")
