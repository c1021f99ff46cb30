"""Samples for every prompt and decoding preset of the config."""

import os

from lmcore.generate import sample_grid
from lmcore.io import write_json
from lmcore.logs import redirect_output
from lmcore.model_folder import load_model

redirect_output(snakemake.log[0])
cfg = snakemake.params.sampling
model, tok = load_model(os.path.dirname(snakemake.input.config))
samples = sample_grid(model, tok, cfg["prompts"], cfg["presets"], cfg["max_new_tokens"], cfg["seed"])
write_json(snakemake.output[0], samples)
print(
    f"{len(samples)} samples ({len(cfg['prompts'])} prompts x {len(cfg['presets'])} presets), "
    f"{sum(s['tokens'] for s in samples):,} tokens"
)
