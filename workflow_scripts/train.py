"""Train one model; resumes from results/checkpoints/<model>/ when a matching checkpoint is there.
With more than one process (`gpus`, `processes_per_node`, `nodes`), the training runs under torchrun."""

import os

from lmcore.train.config import NOT_THE_MATHS, TrainJob
from lmcore.train.launch import launch
from lmcore.train.loop import Stopped
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
configured = snakemake.config["models"][snakemake.wildcards.model]
entry = {**snakemake.params.model, **{k: configured[k] for k in NOT_THE_MATHS}}
job = TrainJob(
    entry,
    snakemake.input.tokenizer,
    snakemake.input.manifest,
    os.path.dirname(snakemake.output.weights),
    snakemake.params.checkpoints,
    threads=snakemake.threads,
    mem_mb=snakemake.resources.mem_mb,
)
try:
    summary = launch(job)
except Stopped as stopped:
    print(stopped)
    raise SystemExit(143) from None
print(summary)
