"""Samples for every prompt and decoding preset of the config."""

import os

from lmcore.io import write_json
from lmcore.model.folder import load_model
from lmcore.model.generate import sample_grid
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
cfg = snakemake.params.sampling
model, tok = load_model(os.path.dirname(snakemake.input.config))
samples = sample_grid(model, tok, cfg["prompts"], cfg["presets"], cfg["max_new_tokens"], cfg["seed"])
write_json(snakemake.output[0], samples)
print(
    f"{len(samples)} samples ({len(cfg['prompts'])} prompts x {len(cfg['presets'])} presets), "
    f"{sum(s['tokens'] for s in samples):,} tokens"
)
