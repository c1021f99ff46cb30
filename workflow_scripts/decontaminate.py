"""One part's training documents that share an n-gram with a task's evaluation data: counted, or left out."""

from lmcore.evaluation.contamination import decontaminate_part
from lmcore.io import write_json
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
p = snakemake.params
stats = decontaminate_part(
    snakemake.input.docs, snakemake.input.ngrams, p.splits, p.ngram, p.action, snakemake.output.docs
)
write_json(snakemake.output.stats, stats)
print(f"{p.action}: { ({task: s['documents'] for task, s in stats.items()}) } training documents overlap")
