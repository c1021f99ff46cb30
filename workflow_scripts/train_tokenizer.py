"""Train a SentencePiece tokenizer on the train split of every deduplicated part, or take the one the config gives."""

from lmcore.tokens import tokenizer
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
cfg = snakemake.params.tokenizer
if cfg["model_file"]:
    pieces = tokenizer.use_model_file(cfg["model_file"], snakemake.output[0])
    print(f"{cfg['model_file']}: used as is, {pieces:,} pieces")
else:
    documents = tokenizer.training_documents(
        snakemake.input.docs, snakemake.params.splits, cfg["max_training_chars"], cfg["seed"]
    )
    print(f"{len(documents)} training documents, {sum(len(d['text']) for d in documents):,} characters")
    try:
        tokenizer.train(documents, snakemake.output[0], cfg, num_threads=snakemake.threads)
    except ValueError as e:  # a vocabulary too small for the corpus: said in the config's terms, without a traceback
        raise SystemExit(f"config key 'tokenizers.{snakemake.wildcards.tok}.vocab_size': {e}") from None
