"""Train a SentencePiece tokenizer on the train split and measure it on the validation split."""
from lmcore import tokenizer
from lmcore.io import redirect_output, write_json
from lmcore.splits import documents_in_split

redirect_output(snakemake.log[0])
cfg, splits, docs = snakemake.params.tokenizer, snakemake.params.splits, snakemake.input.docs
tokenizer.train(documents_in_split(docs, "train", splits), snakemake.output.model, cfg, num_threads=snakemake.threads)
stats = tokenizer.measure(tokenizer.Tokenizer(snakemake.output.model), documents_in_split(docs, "validation", splits))
write_json(snakemake.output.stats, {**cfg, **stats})
print(stats)
