"""Measure a tokenizer on validation documents: compression, byte fallback, vocabulary use, round trips."""

from lmcore.data.splits import documents_in_split
from lmcore.io import write_json
from lmcore.tokens import tokenizer
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
cfg = snakemake.params.tokenizer
documents = documents_in_split(snakemake.input.docs, "validation", snakemake.params.splits)
stats = tokenizer.measure(tokenizer.Tokenizer(snakemake.input.tokenizer), documents, cfg["eval_documents"])
write_json(snakemake.output[0], {"model_type": cfg["model_type"], "requested_vocab_size": cfg["vocab_size"], **stats})
print(stats)
