"""Train one model; resumes from results/checkpoints/<model>/ when a matching checkpoint is there."""
import os

from lmcore.io import redirect_output
from lmcore.train import train

redirect_output(snakemake.log[0])
summary = train(snakemake.params.model, snakemake.input.tokenizer, snakemake.input.manifest,
                os.path.dirname(snakemake.output.weights), snakemake.params.checkpoints, threads=snakemake.threads)
print(summary)
