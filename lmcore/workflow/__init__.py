"""What the Snakemake workflow needs of lmcore besides the stages: the code digest, the job logs."""
