"""Atomic writes, JSON / JSON Lines I/O and hashing: what every stage's outputs are written and read with."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    An interrupted job therefore never leaves a half-written output behind.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path) + ".")
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private, and a writer may replace it with its own (safetensors
        # does, mode 0600): outputs get the usual permissions, set once the writer is done.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file for writing that replaces `path` when the block succeeds."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def copy_file(src, dst):
    """Copy `src` to `dst` atomically."""
    with atomic_open(dst, "wb") as f, open(src, "rb") as source:
        shutil.copyfileobj(source, f)


def write_json(path, obj):
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path, records):
    """Write an iterable of dicts, one JSON object per line, atomically. Returns the count."""
    n = 0
    with atomic_open(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def read_jsonl(path):
    """Yield the records of a JSON Lines file; a bad line is an error naming file and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None


def batches(iterable, n):
    """Lists of `n` items of `iterable` (the last may be shorter), one in memory at a time."""
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stable_hash(text):
    """A 64-bit integer hash of a string that is the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def uniform(text):
    """A draw in [0, 1) that a string decides, the same on every machine and run (splits, samples)."""
    return stable_hash(text) / 2**64


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path` that replaces `path` when the block succeeds."""
    path = os.fspath(path).rstrip("/")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(path) or ".", prefix=".tmp-" + os.path.basename(path) + ".")
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def raw_to_npy(raw_path, npy_path, dtype, columns=None):
    """Wrap a flat binary file of `dtype` into a `.npy` file (1-D, or rows of `columns`),
    atomically and streaming, so that memory stays flat however large the file."""
    n = os.path.getsize(raw_path) // np.dtype(dtype).itemsize
    shape = (n,) if columns is None else (n // columns, columns)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with atomic_open(npy_path, "wb") as out, open(raw_path, "rb") as raw:
        np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(raw, out, 1 << 24)
    return n


def cache_path(name):
    """A file of lmcore's in the user's cache ($XDG_CACHE_HOME/lmcore, else ~/.cache/lmcore): what is slow to
    find out and holds for the machine, such as the measured peak FLOP/s."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lmcore", name)
