"""Scores of one exported model on the configured lm-eval tasks."""

import os

from lmcore.evaluation.harness import run_lm_eval
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
cfg = snakemake.params.evals
scores = run_lm_eval(
    os.path.dirname(snakemake.input.hf[0]),
    cfg["tasks"],
    snakemake.params.next_line,
    snakemake.output[0],
    num_fewshot=cfg["num_fewshot"],
    limit=cfg["limit"],
    batch_size=cfg["batch_size"],
)
for row in scores["scores"]:
    chance = f" (chance {row['chance']:.3f})" if row["chance"] else ""
    print(f"{row['task']} {row['metric']}: {row['value']:.4f}{chance}")
