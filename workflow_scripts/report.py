"""The self-contained HTML report of the run."""

from lmcore.io import atomic_open
from lmcore.report import build
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
html = build(
    snakemake.input,
    snakemake.params.config,
    snakemake.params.tokenizers,
    snakemake.params.models,
    benchmarks_dir="benchmarks",
)
with atomic_open(snakemake.output[0]) as f:
    f.write(html)
print(f"{snakemake.output[0]}: {len(snakemake.params.models)} models, {len(html.encode()) / 1e3:,.0f} kB")
