"""The word n-grams of each configured task's evaluation data, for decontamination."""

from lmcore.evaluation.contamination import write_eval_ngrams
from lmcore.io import write_json
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
p = snakemake.params
checked = write_eval_ngrams(p.tasks, list(snakemake.input.parts), p.splits, p.ngram, snakemake.output.ngrams)
write_json(snakemake.output.tasks, checked)
print(f"{p.ngram}-grams per task (None: its data is not local, unchecked): {checked}")
