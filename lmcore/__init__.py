"""lmcore: the library behind the pipeline, importable and testable without Snakemake."""
__version__ = "0.1.0"

# The modules a training run executes, in one list: the train rule takes them as inputs (an
# edit reruns training), and lmcore.train fingerprints them, so that a checkpoint written by
# other versions of them is never resumed. Here, because the Snakefile must not import torch.
TRAINING_CODE = ("train.py", "runtime.py", "model_folder.py", "model.py", "optim.py", "checkpoint.py", "shards.py", "tokenizer.py", "hf.py")
