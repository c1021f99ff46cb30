"""One reader's share of a source's raw files to JSON Lines documents, a file per part, plus stats.json."""

import os
import time

from lmcore.data.ingest import ingest
from lmcore.io import atomic_dir, read_json, write_json
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
start = time.perf_counter()
source, reader = snakemake.params.source, int(snakemake.wildcards.reader)
raw = snakemake.input.raw
with atomic_dir(snakemake.output[0]) as tmp:
    parts = [os.path.join(tmp, f"part-{k}.jsonl") for k in range(source["parts"])]
    manifest = read_json(os.path.join(raw, "manifest.json"))
    stats = ingest(
        snakemake.wildcards.source, os.path.join(raw, "files"), manifest, source, reader, source["parts"], parts
    )
    write_json(os.path.join(tmp, "stats.json"), stats)
    wrote = sum(os.path.getsize(p) for p in parts)
seconds = time.perf_counter() - start
print(
    f"reader {reader}: {stats['files']:,} files begun, {stats['documents']:,} documents, {stats['characters']:,} "
    f"characters, dropped {stats['dropped']}; wrote {wrote / 1e6:,.1f} MB in {seconds:.1f} s "
    f"({wrote / 1e6 / max(seconds, 1e-9):.1f} MB/s)"
)
