"""Loss, perplexity and bits per byte on the test and validation splits, and a unigram baseline.
On the device and in the precision the model trained in (a GPU where the job has one)."""

import os

import torch

from lmcore.evaluation.perplexity import evaluate_model, unigram_baseline
from lmcore.io import write_json
from lmcore.model.folder import load_model, read_config
from lmcore.tokens.shards import TokenDataset
from lmcore.train.loggers import log_evaluation
from lmcore.train.runtime import autocast_dtype, pick_device, use_tf32
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
folder = os.path.dirname(snakemake.input.config)
train = read_config(folder)["train"]
device = pick_device(train.get("device", "auto"))
dtype = autocast_dtype(train.get("precision", "auto"), device)
use_tf32(device)
model, tok = load_model(folder, device)
data = {s: TokenDataset(snakemake.input.manifest, s, tok.fingerprint) for s in ("train", "validation", "test")}
token_bytes = tok.token_bytes()
result = {s: evaluate_model(model, data[s], token_bytes, device=device, dtype=dtype) for s in ("test", "validation")}
result["baseline"] = unigram_baseline(data["train"], data["test"], token_bytes, tok.vocab_size)
result["tokenizer_fingerprint"] = tok.fingerprint
write_json(snakemake.output[0], result)
print(f"{device.type}, {dtype or torch.float32}: {result}")
configured = snakemake.config["models"][snakemake.wildcards.model]
if configured["loggers"]:  # the test figures beside the training curves
    log_evaluation(configured["loggers"], folder, configured, result)
