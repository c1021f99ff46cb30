"""Export one trained model as a Hugging Face folder (the rule runs only for models that have an HF architecture)."""

import os

from lmcore.export.hf import export
from lmcore.workflow.joblog import redirect_output

redirect_output(snakemake.log[0])
folder = os.path.dirname(snakemake.output[0])
print(f"{folder}: {export(os.path.dirname(snakemake.input.config), folder)} layout")
