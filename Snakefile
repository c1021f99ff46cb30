# Raw text in, trained language models and a report out:
#   snakemake --cores 8 results/report.html
from snakemake.utils import min_version

min_version("9.0")


# The default run; a --configfile replaces it rather than merging into it.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
wildcard_constraints:
    source="[A-Za-z0-9_-]+",
    part=r"\d+",
    reader=r"\d+",
    group=r"\d+",
    range=r"\d+",
    tok="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_.-]+",
    split="|".join(SPLITS),


localrules:
    download,
    report,


include: "rules/download.smk"
include: "rules/ingest.smk"
include: "rules/clean.smk"
include: "rules/dedup.smk"
include: "rules/filter.smk"
include: "rules/tokenizer.smk"
include: "rules/shards.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/sample.smk"
include: "rules/export.smk"
include: "rules/evals.smk"
include: "rules/report.smk"


rule all:
    input:
        "results/report.html",
    default_target: True
