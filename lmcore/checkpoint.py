"""Checkpoints (exact resume) and final weights in the safetensors format.

Checkpoints are read with `torch.load(weights_only=True)`, so loading one can never
run code; they hold every RNG state (`rng_state`) beside the loop's own state. The
final weights are `model.safetensors`, written and read by the `safetensors` package;
lmcore.model_folder puts them in a model's folder.
"""
import glob
import os
import random
import re

import numpy as np
import safetensors.torch
import torch

from lmcore.io import atomic_path

def save_safetensors(tensors, path, metadata=None):
    """Write tensors (contiguous copies on the CPU; a tensor shared by two names must be given once) atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})


def load_safetensors(path):
    return safetensors.torch.load_file(path)


def checkpoint_path(folder, step):
    return os.path.join(folder, f"ckpt-{step:08d}.pt")


def list_checkpoints(folder):
    """Checkpoint paths, oldest first."""
    paths = glob.glob(os.path.join(folder, "ckpt-*.pt"))
    return sorted(p for p in paths if re.fullmatch(r"ckpt-\d{8}\.pt", os.path.basename(p)))


def save_checkpoint(folder, step, state, keep):
    """Write atomically, then remove all but the newest `keep` checkpoints."""
    path = checkpoint_path(folder, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in list_checkpoints(folder)[:-keep]:
        os.remove(old)
    return path


def load_checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state():
    """Every global RNG, in types `torch.load(weights_only=True)` accepts (numpy's as plain lists)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, key.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    random.setstate(state["python"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
