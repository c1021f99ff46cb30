"""A filtered source's thresholds: `keep: {top: share}` and CCNet's thirds, from a histogram of every part's scores."""

from lmcore.data.quality import write_thresholds
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
plan = write_thresholds(snakemake.output[0], snakemake.params.source, snakemake.input)
print({k: v["keep"] for k, v in plan.items() if isinstance(v, dict)}, f"over {plan['documents']:,} documents")
