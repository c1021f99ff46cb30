"""Loss, perplexity and bits per byte on the test and validation splits, and a unigram baseline."""

import os

import torch

from lmcore.evaluation.perplexity import evaluate_folder
from lmcore.io import write_json
from lmcore.train.loggers import log_evaluation
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
folder = os.path.dirname(snakemake.input.config)
result = evaluate_folder(folder, snakemake.input.manifest)
write_json(snakemake.output[0], result)
configured = snakemake.config["models"][snakemake.wildcards.model]
if configured["loggers"]:  # the test figures beside the training curves
    log_evaluation(configured["loggers"], folder, configured, result)
