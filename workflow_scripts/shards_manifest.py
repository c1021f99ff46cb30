"""One manifest per tokenizer: tokens per split and part, dtype, fingerprint, checksums."""

from lmcore.io import read_json
from lmcore.tokens.shards import write_manifest
from lmcore.tokens.tokenizer import Tokenizer
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
parts = [
    {"name": f"{source}/part-{k}", "source": source, **read_json(path)}
    for (source, k), path in zip(snakemake.params.parts, snakemake.input.stats)
]
# Every model of this tokenizer must find a window in every split (of each source it trains on); read
# from the config, not params, so that a model's context_length reruns that model only (train checks it again).
readers = {
    name: (m["context_length"] + 1, m["data"]["sources"])
    for name, m in snakemake.config["models"].items()
    if m["tokenizer"] == snakemake.wildcards.tok
}
manifest = write_manifest(
    snakemake.output[0], Tokenizer(snakemake.input.tokenizer), parts, readers, snakemake.wildcards.tok
)
print(manifest["tokens"])
