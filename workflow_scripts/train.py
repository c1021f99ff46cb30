"""Train one model; resumes from results/checkpoints/<model>/ when a matching checkpoint is there.
With `gpus` above 1 in the model's config, the training runs under torchrun (DDP)."""

import os

from lmcore.logs import redirect_output
from lmcore.train import Stopped, launch

redirect_output(snakemake.log[0])
entry = snakemake.params.model
try:
    summary = launch(
        entry,
        snakemake.input.tokenizer,
        snakemake.input.manifest,
        os.path.dirname(snakemake.output.weights),
        snakemake.params.checkpoints,
        threads=snakemake.threads,
        nproc=entry["gpus"],
        mem_mb=snakemake.resources.mem_mb,
    )
except Stopped as stopped:
    print(stopped)
    raise SystemExit(143) from None
print(summary)
