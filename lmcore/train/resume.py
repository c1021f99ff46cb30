"""Whether a training run resumes: from its newest intact checkpoint when one matches the run (its
configuration, tokenizer, training code and starting weights), else afresh (lmcore.train.init)."""

import json
import os

import torch.distributed as dist

from lmcore.io import sha256_file
from lmcore.train.checkpoint import DamagedCheckpoint, list_checkpoints, load_checkpoint, remove_checkpoint
from lmcore.train.config import NOT_THE_MATHS
from lmcore.train.init import weight_files
from lmcore.workflow.closure import digest


def code_fingerprint():
    """The digest of the code training runs (lmcore.workflow.closure of lmcore/train/loop.py): a checkpoint of
    other code is not resumed (an edited model/gpt.py trains afresh; an edited export does not)."""
    return digest(os.path.join(os.path.dirname(os.path.abspath(__file__)), "loop.py"))


def run_key(entry, fingerprint, models_dir):
    """What a checkpoint must match to be resumed: the model's configuration, the tokenizer, the code,
    and the files of the weights it started from."""
    files = weight_files(entry, models_dir)  # a new parent, teacher or reference starts the run afresh
    start = {role: {os.path.basename(p): sha256_file(p) for p in paths} for role, paths in files.items()} or None
    # Turning activation checkpointing on to get past an out-of-memory, or a logger on, resumes.
    config = {k: v for k, v in entry.items() if k not in NOT_THE_MATHS}
    return json.dumps(
        {"config": config, "tokenizer": fingerprint, "code": code_fingerprint(), "start": start}, sort_keys=True
    )


def newest_checkpoint(ckpt_dir, key, rank, log):
    """The contents of the newest intact checkpoint of this run (`key`, from `run_key`), or None, with the
    checkpoints of other runs removed. A damaged checkpoint is named, renamed to `<name>.damaged` (kept for
    a look, out of the way of the next save) and passed over for the one before it."""
    for path in reversed(list_checkpoints(ckpt_dir)):  # each loaded once, newest first
        try:
            ck = load_checkpoint(path, rank)
        except DamagedCheckpoint as e:
            together()  # every process has read it before rank 0 moves it
            if rank == 0:
                os.replace(path, path + ".damaged")
                log(f"{e}; moved to {os.path.basename(path)}.damaged, trying the checkpoint before it")
            continue
        if ck["run_key"] == key:
            log(f"Resumed from step {ck['step']}")
            return ck
    together()
    if list_checkpoints(ckpt_dir) and rank == 0:
        log(f"{ckpt_dir}: checkpoints of another configuration, tokenizer or training code; starting afresh")
        for path in list_checkpoints(ckpt_dir):
            remove_checkpoint(path)
    together()
    return None


def together():
    """Wait for every process of a distributed run (nothing in a single process)."""
    if dist.is_initialized():
        dist.barrier()
