"""The PEFT adapter of a LoRA model over its base model's Hugging Face folder."""

import os

from lmcore.export.peft import export_adapter
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
modules = export_adapter(
    os.path.dirname(snakemake.input.config),
    os.path.dirname(snakemake.input.base_config),
    os.path.dirname(snakemake.output.config),
    os.path.dirname(snakemake.input.base_hf[0]),
)
print(f"{snakemake.output.config}: {len(modules)} adapted layers")
