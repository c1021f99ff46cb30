"""Train a source's quality classifier (fastText) on a sample of its positive source against its negative one."""

from lmcore.data.quality import draw_sample, train_classifier
from lmcore.io import write_json
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
cfg, splits = snakemake.params.quality, snakemake.params.splits
positive = draw_sample(snakemake.input.positive, cfg["sample"], splits, "quality-sample:")
negative = draw_sample(snakemake.input.negative, cfg["sample"], splits, "quality-sample:")
figures = train_classifier(positive, negative, snakemake.output.model, cfg, cfg["label"])
write_json(snakemake.output.stats, figures)
