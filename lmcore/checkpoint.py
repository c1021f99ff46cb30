"""Checkpoints (exact resume) and final weights in the safetensors format.

Checkpoints are read with `torch.load(weights_only=True)`, so loading one can never
run code; they hold every RNG state (`rng_state`) beside the loop's own state. The
final weights are `model.safetensors` (written here, the format is an 8-byte header
length, a JSON header, then raw little-endian tensor bytes); lmcore.model_folder puts
them in a model's folder.
"""
import glob
import json
import os
import random
import re
import struct

import numpy as np
import torch

from lmcore.io import atomic_open, atomic_path

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}
BY_NAME = {v: k for k, v in DTYPES.items()}


def save_safetensors(tensors, path, metadata=None):
    header, offset = {}, 0
    tensors = {k: v.detach().contiguous().cpu() for k, v in sorted(tensors.items())}
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8 bytes
    with atomic_open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for t in tensors.values():
            f.write(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def load_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = torch.frombuffer(data[begin:end], dtype=torch.uint8) if end > begin else torch.zeros(0, dtype=torch.uint8)
        out[name] = raw.view(BY_NAME[info["dtype"]]).reshape(info["shape"]).clone()
    return out


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
