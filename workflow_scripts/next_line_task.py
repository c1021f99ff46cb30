"""next_line: which line follows a passage, as an lm-eval task over the corpus's test documents."""

import os

from lmcore.evaluation.harness import write_next_line_task
from lmcore.io import write_json
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
cfg = snakemake.params.next_line
stats = write_next_line_task(
    list(snakemake.input.parts),
    snakemake.params.splits,
    os.path.dirname(snakemake.output.task),
    cfg["questions"],
    cfg["choices"],
    cfg["context_lines"],
    cfg["max_chars"],
    cfg["seed"],
    snakemake.params.contexts,
)
write_json(snakemake.output.stats, stats)
print(f"{stats} ({cfg['choices']} choices after {cfg['context_lines']} lines)")
