"""Checkpoints, for exact resume.

Checkpoints are read with `torch.load(weights_only=True)`, so loading one can never
run code; they hold every RNG state (`rng_state`) beside the loop's own state. Each
`ckpt-<step>.pt` has its sha256 beside it in `ckpt-<step>.pt.sha256` (the format of
`sha256sum`, so `sha256sum -c` checks it by hand): a file cut short or changed on disk is
named and never resumed. A run sharded with FSDP checkpoints into a folder `ckpt-<step>/` instead:
torch.distributed.checkpoint's files, in which each process wrote its shards of model and optimizer,
`rng-<rank>.pt` per process, `state.pt` (the loop's state) and `SHA256SUMS` of them all.
The final weights are a model folder's (lmcore.model.folder).
"""

import glob
import os
import random
import re
import shutil

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from lmcore.io import atomic_path, sha256_file


class DamagedCheckpoint(ValueError):
    """A checkpoint whose bytes differ from its recorded sha256, or that torch cannot read."""


def checkpoint_path(folder, step, sharded=False):
    """A checkpoint's file, or its folder when `sharded` (lmcore.train.checkpoint.save_sharded)."""
    return os.path.join(folder, f"ckpt-{step:08d}" + ("" if sharded else ".pt"))


def list_checkpoints(folder):
    """Checkpoint paths, files and sharded folders, oldest first."""
    paths = glob.glob(os.path.join(folder, "ckpt-*"))
    return sorted(p for p in paths if re.fullmatch(r"ckpt-\d{8}(\.pt)?", os.path.basename(p)))


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


def save_sharded(folder, step, model, optimizer, state, keep):
    """A sharded checkpoint of an FSDP run, written by every process together (a collective): each its
    shards and RNG states, then rank 0 the loop's `state` and the checksums; the folder is renamed into
    place only when complete, so a job killed meanwhile leaves no checkpoint that looks whole."""
    rank = dist.get_rank()
    path = checkpoint_path(folder, step, sharded=True)
    tmp = path + ".tmp"
    if rank == 0:
        for stale in glob.glob(os.path.join(folder, "ckpt-*.tmp")):  # of an attempt killed while saving
            shutil.rmtree(stale)
    dist.barrier()
    model_state, optimizer_state = get_state_dict(model, getattr(optimizer, "optimizers", optimizer))
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=tmp)
    torch.save(rng_state(), os.path.join(tmp, f"rng-{rank}.pt"))
    dist.barrier()
    if rank == 0:
        torch.save(state, os.path.join(tmp, "state.pt"))
        sums = [f"{sha256_file(os.path.join(tmp, name))}  {name}\n" for name in sorted(os.listdir(tmp))]
        with open(os.path.join(tmp, "SHA256SUMS"), "w", encoding="utf-8") as f:
            f.writelines(sums)
        os.replace(tmp, path)
        for old in list_checkpoints(folder)[:-keep]:
            remove_checkpoint(old)
    dist.barrier()
    return path


class Checkpointer:
    """When and how a run checkpoints: after every `interval` steps and when it stops early (SIGTERM),
    keeping the newest `keep`; under fsdp (`sharded`) every process writes its shards, else rank 0 one file.
    A checkpoint holds model, optimizer, every RNG, the loop's state, the data position and the run's key."""

    def __init__(self, folder, key, interval, keep, model, optimizer, rank, sharded):
        self.folder, self.key, self.interval, self.keep = folder, key, interval, keep
        self.model, self.optimizer, self.rank, self.sharded = model, optimizer, rank, sharded

    def maybe_save(self, state, batches, job_s, stopping):
        """After `state.step` steps, called by every process. `batches` (lmcore.train.batches) stands where the
        next step's data starts; `job_s` is the wall time of the run's attempts so far."""
        if state.step % self.interval and not stopping:
            return None
        loop = {"run_key": self.key, "data": batches.state_dict(), "job_s": job_s, **vars(state)}
        if self.sharded:
            return save_sharded(self.folder, state.step, self.model, self.optimizer, loop, self.keep)
        if self.rank == 0:
            saved = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "rng": rng_state()}
            return save_checkpoint(self.folder, state.step, {**saved, **loop}, self.keep)
        return None

    def load(self, ck):
        """Model, optimizer and RNGs from a checkpoint's contents (lmcore.train.resume.newest_checkpoint)."""
        if ck.get("sharded"):
            load_sharded(ck["sharded"], self.model, self.optimizer)
        else:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
        set_rng_state(ck["rng"])


def load_sharded(path, model, optimizer):
    """Model and optimizer from a sharded checkpoint, each process reading its own shards."""
    optimizers = getattr(optimizer, "optimizers", optimizer)  # lmcore.train.optim.Optimizers: each of them
    model_state, optimizer_state = get_state_dict(model, optimizers)
    dcp.load({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=path)
    set_state_dict(model, optimizers, model_state_dict=model_state, optim_state_dict=optimizer_state)


def verify_sharded(path):
    """Every file of a sharded checkpoint against SHA256SUMS, and no file missing; DamagedCheckpoint names the first."""
    try:
        with open(os.path.join(path, "SHA256SUMS"), encoding="utf-8") as f:
            sums = [line.split() for line in f if line.strip()]
    except OSError as e:
        raise DamagedCheckpoint(f"{path}: no readable SHA256SUMS ({e.strerror}): written part way") from None
    for expected, name in sums:
        file = os.path.join(path, name)
        actual = sha256_file(file) if os.path.exists(file) else "missing"
        if actual != expected:
            raise DamagedCheckpoint(f"{file}: sha256 {actual[:16]} differs from {expected[:16]}... in SHA256SUMS")
    return True


def remove_checkpoint(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
        return
    for p in (path, path + ".sha256"):
        if os.path.exists(p):
            os.remove(p)


def verify_checkpoint(path):
    """DamagedCheckpoint, naming the file and why, unless the checkpoint matches its recorded sha256."""
    try:
        with open(path + ".sha256", encoding="utf-8") as f:
            expected = f.read().split()[0]
    except FileNotFoundError:
        raise DamagedCheckpoint(f"{path}: no checksum beside it ({os.path.basename(path)}.sha256)") from None
    except (OSError, IndexError, UnicodeDecodeError) as e:
        raise DamagedCheckpoint(f"{path}: its checksum file {path}.sha256 is unreadable ({e})") from None
    actual = sha256_file(path)
    if actual != expected:
        raise DamagedCheckpoint(
            f"{path}: sha256 {actual[:16]}... differs from {expected[:16]}... recorded in "
            f"{os.path.basename(path)}.sha256 when it was written (the file was cut short or changed on disk)"
        )


def load_checkpoint(path, rank=0):
    """The checkpoint's contents, checked against its sha256 first; DamagedCheckpoint names a file
    that does not match or that torch cannot read. Of a sharded one (its files checked against its
    SHA256SUMS), the loop's state, this process's RNG states and its path in "sharded" (model and
    optimizer: `load_sharded`)."""
    if os.path.isdir(path):
        verify_sharded(path)
        ck = torch_load(os.path.join(path, "state.pt"))
        return {**ck, "rng": torch_load(os.path.join(path, f"rng-{rank}.pt")), "sharded": path}
    verify_checkpoint(path)
    return torch_load(path)


def torch_load(path):
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
