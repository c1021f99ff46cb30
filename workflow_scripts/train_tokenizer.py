"""Train a SentencePiece tokenizer on the train split of every deduplicated part."""
from lmcore import tokenizer
from lmcore.io import redirect_output
from lmcore.splits import documents_in_split

redirect_output(snakemake.log[0])
documents = documents_in_split(snakemake.input.docs, "train", snakemake.params.splits)
tokenizer.train(documents, snakemake.output[0], snakemake.params.tokenizer, num_threads=snakemake.threads)
