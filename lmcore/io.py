"""One place for atomic writes, JSON / JSON Lines I/O and hashing."""
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

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


def hf_weight_files(folder):
    """The files of a Hugging Face folder that hold its model: config.json and every .safetensors
    (rule inputs, checkpoint run key and loader read the same list; no torch import here)."""
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name == "config.json" or name.endswith(".safetensors")]


def starting_files(init_from, models_dir):
    """The weight files a model's `init_from` names: a Hugging Face folder's, or those of another model
    of the config, in `models_dir` (results/models/). The train rule's inputs and the run key."""
    if "hf" in init_from:
        return hf_weight_files(init_from["hf"])
    return [os.path.join(models_dir, init_from["model"], "model.safetensors")]


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


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stable_hash(text):
    """A 64-bit integer hash of a string that is the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


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


class Timestamped:
    """A text stream that starts every line with the local date and time."""

    def __init__(self, stream):
        self.stream, self.line_start = stream, True

    def write(self, text):
        for piece in text.splitlines(keepends=True):
            if self.line_start:
                self.stream.write(time.strftime("%Y-%m-%d %H:%M:%S "))
            self.stream.write(piece)
            self.line_start = piece.endswith("\n")
        return len(text)

    def __getattr__(self, name):  # flush, fileno, encoding, ... of the stream beneath
        return getattr(self.stream, name)


def redirect_output(log_path):
    """Send this process's stdout and stderr, line-buffered and timestamped, to a job's log file."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    stream = Timestamped(open(log_path, "a", buffering=1, encoding="utf-8"))
    sys.stdout = sys.stderr = stream
    return stream


def disk_bytes(paths):
    """The size of the files and folders (everything under them) in `paths`."""
    total = 0
    for path in paths:
        if os.path.isdir(path):
            total += sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        else:
            total += os.path.getsize(path)
    return total


def data_rate(paths, start):
    """'12.3 MB in 2.5 s (4.9 MB/s)': the size of the files (or folders) a job read since `start` (perf_counter)."""
    nbytes = disk_bytes([paths] if isinstance(paths, (str, os.PathLike)) else paths)
    seconds = time.perf_counter() - start
    return f"{nbytes / 1e6:,.1f} MB in {seconds:.1f} s ({nbytes / 1e6 / max(seconds, 1e-9):,.1f} MB/s)"
