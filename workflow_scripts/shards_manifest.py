"""One manifest per tokenizer: tokens per split and part, dtype, fingerprint, checksums."""
from lmcore.io import read_json, redirect_output
from lmcore.shards import write_manifest
from lmcore.tokenizer import Tokenizer

redirect_output(snakemake.log[0])
parts = [{"name": path, **read_json(path)} for path in snakemake.input.stats]
manifest = write_manifest(snakemake.output[0], Tokenizer(snakemake.input.tokenizer), parts)
print(manifest["tokens"])
