"""One part's documents scored by its source's filters: a quality classifier, a reference model, a sample."""

import os

import torch

from lmcore.data.quality import score_part
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
score_part(
    snakemake.input.docs,
    snakemake.params.source,
    snakemake.output[0],
    classifier=snakemake.input.get("classifier"),
    reference=os.path.dirname(snakemake.input.reference_weights)
    if "reference_weights" in snakemake.input.keys()
    else None,
)
