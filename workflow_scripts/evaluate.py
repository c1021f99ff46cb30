"""Loss, perplexity and bits per byte on the test and validation splits, and a unigram baseline."""
import os

import torch

from lmcore.evaluate import evaluate_model, unigram_baseline
from lmcore.io import redirect_output, write_json
from lmcore.shards import TokenDataset
from lmcore.model_folder import load_model

redirect_output(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
model, tok = load_model(os.path.dirname(snakemake.input.config))
data = {s: TokenDataset(snakemake.input.manifest, s, tok.fingerprint) for s in ("train", "validation", "test")}
token_bytes = tok.token_bytes()
result = {s: evaluate_model(model, data[s], token_bytes) for s in ("test", "validation")}
result["baseline"] = unigram_baseline(data["train"], data["test"], token_bytes, tok.vocab_size)
result["tokenizer_fingerprint"] = tok.fingerprint
write_json(snakemake.output[0], result)
print(result)
