"""Encode one part into one .npy shard per split."""
from lmcore.io import redirect_output, write_json
from lmcore.shards import shard_part
from lmcore.splits import SPLITS
from lmcore.tokenizer import Tokenizer

redirect_output(snakemake.log[0])
out = dict(zip(SPLITS, snakemake.output.shards))
stats = shard_part(snakemake.input.docs, Tokenizer(snakemake.input.tokenizer), snakemake.params.splits, out, snakemake.threads)
write_json(snakemake.output.stats, {"stats": stats, "shards": out})
print(stats)
