"""Write one trained model as a GGUF file for llama.cpp (the rule runs only for models one of its graphs computes)."""

import os

from lmcore.export.gguf import export
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
model_dir = os.path.dirname(snakemake.input.config)
arch = export(model_dir, snakemake.output[0], snakemake.params.dtype, name=snakemake.wildcards.model)
print(f"{snakemake.output[0]}: llama.cpp architecture {arch}, {snakemake.params.dtype}")
