"""Checkpoints (exact resume) and final weights in the safetensors format.

Checkpoints are read with `torch.load(weights_only=True)`, so loading one can never
run code; they hold every RNG state (`rng_state`) beside the loop's own state. Each
`ckpt-<step>.pt` has its sha256 beside it in `ckpt-<step>.pt.sha256` (the format of
`sha256sum`, so `sha256sum -c` checks it by hand): a file cut short or changed on disk is
named and never resumed. The final weights are `model.safetensors`, written and read by
the `safetensors` package; lmcore.model_folder puts them in a model's folder.
"""

import glob
import os
import random
import re

import numpy as np
import safetensors
import safetensors.torch
import torch

from lmcore.io import atomic_path, sha256_file


class DamagedCheckpoint(ValueError):
    """A checkpoint whose bytes differ from its recorded sha256, or that torch cannot read."""


def save_safetensors(tensors, path, metadata=None):
    """Write tensors (contiguous copies on the CPU; a tensor shared by two names must be given once) atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})


def load_safetensors(path):
    """The tensors of a safetensors file; ValueError names a file cut short or not in the format."""
    try:
        return safetensors.torch.load_file(path)
    except safetensors.SafetensorError as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def checkpoint_path(folder, step):
    return os.path.join(folder, f"ckpt-{step:08d}.pt")


def list_checkpoints(folder):
    """Checkpoint paths, oldest first."""
    paths = glob.glob(os.path.join(folder, "ckpt-*.pt"))
    return sorted(p for p in paths if re.fullmatch(r"ckpt-\d{8}\.pt", os.path.basename(p)))


def save_checkpoint(folder, step, state, keep):
    """Write atomically with its sha256 beside it, then remove all but the newest `keep` checkpoints.

    The checksum file is in place before the checkpoint is renamed into place, so that every
    checkpoint this code wrote has one: a checkpoint without it was written by an older lmcore."""
    path = checkpoint_path(folder, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        with atomic_path(path + ".sha256") as sum_tmp, open(sum_tmp, "w", encoding="utf-8") as f:
            f.write(f"{sha256_file(tmp)}  {os.path.basename(path)}\n")
    for old in list_checkpoints(folder)[:-keep]:
        remove_checkpoint(old)
    return path


def remove_checkpoint(path):
    for p in (path, path + ".sha256"):
        if os.path.exists(p):
            os.remove(p)


def verify_checkpoint(path):
    """True when the checkpoint matches its recorded sha256, False when it has none (an older
    lmcore's); DamagedCheckpoint, naming the file and why, when it does not match."""
    try:
        with open(path + ".sha256", encoding="utf-8") as f:
            expected = f.read().split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError, UnicodeDecodeError) as e:
        raise DamagedCheckpoint(f"{path}: its checksum file {path}.sha256 is unreadable ({e})") from None
    actual = sha256_file(path)
    if actual != expected:
        raise DamagedCheckpoint(
            f"{path}: sha256 {actual[:16]}... differs from {expected[:16]}... recorded in "
            f"{os.path.basename(path)}.sha256 when it was written (the file was cut short or changed on disk)"
        )
    return True


def load_checkpoint(path):
    """The checkpoint's contents, checked against its sha256 first; DamagedCheckpoint names a file
    that does not match or that torch cannot read."""
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a zip cut short, a pickle of something else: torch names neither file nor cause
        raise DamagedCheckpoint(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None


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
