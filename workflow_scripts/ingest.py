"""Raw files of one source to JSON Lines documents in `parts` files, plus stats.json."""

import os
import time

from lmcore.data.ingest import ingest
from lmcore.io import atomic_dir, read_json, write_json
from lmcore.logs import data_rate, redirect_output

redirect_output(snakemake.log[0])
start = time.perf_counter()
source = snakemake.params.source
raw = snakemake.input.raw
with atomic_dir(snakemake.output[0]) as tmp:
    parts = [os.path.join(tmp, f"part-{k}.jsonl") for k in range(source["parts"])]
    stats = ingest(
        snakemake.wildcards.source, raw, read_json(os.path.join(raw, "manifest.json")), source["documents"], parts
    )
    write_json(os.path.join(tmp, "stats.json"), stats)
print(
    f"{stats['files']:,} files, {stats['documents']:,} documents, {stats['characters']:,} characters; read "
    f"{data_rate(raw, start)}"
)
