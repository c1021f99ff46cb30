"""Export one trained model as a Hugging Face folder, or say why its options have none."""
import os

from lmcore.hf import export
from lmcore.io import redirect_output

redirect_output(snakemake.log[0])
architecture = export(os.path.dirname(snakemake.input.config), snakemake.output[0])
print(f"{snakemake.output[0]}: {architecture} layout" if architecture else f"{snakemake.output[0]}: not exported, see unsupported.json")
