"""Where a training run starts: from its newest intact checkpoint when one matches the run (its
configuration, tokenizer, training code and starting weights), else afresh, from random weights
or from the weights its `init_from` names."""

import json
import os

import torch.distributed as dist

from lmcore.checkpoint import DamagedCheckpoint, list_checkpoints, load_checkpoint, remove_checkpoint
from lmcore.closure import digest
from lmcore.families import BLOCK_KEYS, NOT_THE_MATHS, OPTION_DEFAULTS
from lmcore.init_from import starting_files
from lmcore.io import sha256_file
from lmcore.model_folder import read_config, read_weights


def code_fingerprint():
    """The digest of the code training runs (lmcore.closure of lmcore/train.py): a checkpoint of other
    code is not resumed (an edited model.py trains afresh; an edited export does not)."""
    return digest(os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py"))


def run_key(entry, fingerprint, models_dir):
    """What a checkpoint must match to be resumed: the model's configuration, the tokenizer, the code,
    and the files of the weights it started from."""
    init = entry.get("init_from")
    start = {os.path.basename(path): sha256_file(path) for path in starting_files(init, models_dir)} if init else None
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
            unchecked = (
                "" if os.path.exists(path + ".sha256") else f" ({path} has no checksum: written by an older lmcore)"
            )
            log(f"Resumed from step {ck['step']}{unchecked}")
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


def starting_weights(init_from, model, models_dir, tokenizer):
    """The weights `init_from` names (a Hugging Face folder, or another model's folder in `models_dir`),
    checked against `model` and its tokenizer tensor by tensor before any step."""
    if "hf" in init_from:
        from lmcore.hf import load_hf

        where = init_from["hf"]
        options, weights = load_hf(where)
    else:
        where = os.path.join(models_dir, init_from["model"])
        saved = read_config(where)
        if saved["tokenizer_fingerprint"] != tokenizer.fingerprint:
            raise ValueError(
                f"init_from {where}: trained with tokenizer {saved['tokenizer_fingerprint'][:12]}, "
                f"this model with {tokenizer.fingerprint[:12]}; a model continues another of the same tokenizer"
            )
        options, weights = saved["model"], read_weights(where, saved)
    options = {**OPTION_DEFAULTS, **options}  # a folder saved before an option existed did without it
    for key in BLOCK_KEYS:
        if options[key] != getattr(model.cfg, key):
            raise ValueError(
                f"init_from {where}: {key} is {options[key]} there, {getattr(model.cfg, key)} in this model entry"
            )
    ours = model.state_dict()
    for name, tensor in weights.items():
        if name not in ours or ours[name].shape != tensor.shape:
            raise ValueError(
                f"init_from {where}: tensor {name} has shape {tuple(tensor.shape)} there, "
                f"{tuple(ours[name].shape) if name in ours else 'none'} in this model entry"
            )
    return where, weights
