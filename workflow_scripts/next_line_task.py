"""next_line: which line follows a passage, as an lm-eval task over the corpus's test documents."""

import os

from lmcore.evaluation.harness import write_next_line_task
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
cfg = snakemake.params.next_line
n = write_next_line_task(
    list(snakemake.input),
    snakemake.params.splits,
    os.path.dirname(snakemake.output.task),
    cfg["questions"],
    cfg["choices"],
    cfg["context_lines"],
    cfg["max_chars"],
    cfg["seed"],
)
print(f"{n} questions of {cfg['choices']} choices after {cfg['context_lines']} lines")
