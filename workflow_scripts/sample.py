"""Samples for every prompt and decoding preset; replies to held-out conversations where the test split has them."""

import os

from lmcore.io import write_json
from lmcore.model.converse import held_out_conversations
from lmcore.model.folder import load_model
from lmcore.model.generate import sample_grid
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
cfg = snakemake.params.sampling
model, tok = load_model(os.path.dirname(snakemake.input.config))
samples = sample_grid(model, tok, cfg["prompts"], cfg["presets"], cfg["max_new_tokens"], cfg["seed"])
conversations = held_out_conversations(
    model, tok, snakemake.input.manifest, cfg["conversations"], cfg["presets"], cfg["max_new_tokens"], cfg["seed"]
)
write_json(snakemake.output[0], {"samples": samples, "conversations": conversations})
print(
    f"{len(samples)} samples ({len(cfg['prompts'])} prompts x {len(cfg['presets'])} presets), "
    f"{sum(s['tokens'] for s in samples):,} tokens; replies to {len(conversations)} held-out conversations"
)
