"""Train a SentencePiece tokenizer on the train split of every deduplicated part."""
from lmcore import tokenizer
from lmcore.io import redirect_output

redirect_output(snakemake.log[0])
cfg = snakemake.params.tokenizer
documents = tokenizer.training_documents(snakemake.input.docs, snakemake.params.splits, cfg["max_training_chars"], cfg["seed"])
print(f"{len(documents)} training documents, {sum(len(d['text']) for d in documents):,} characters")
tokenizer.train(documents, snakemake.output[0], cfg, num_threads=snakemake.threads)
