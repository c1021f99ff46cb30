"""Download a source (url, path or pypi), check its sha256, unpack it safely, list what arrived.

The result is a folder `files/` of plain files and a `manifest.json` with each file's
path, size and sha256. Nothing outside the target folder is ever written: archive
members with absolute paths, `..` or links pointing out are refused by name.
"""
import bz2
import fnmatch
import glob
import gzip
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

from lmcore.io import sha256_file

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


class DownloadError(RuntimeError):
    pass


class UnreadableFile(DownloadError):
    """A file whose name says archive or compressed and whose bytes are not (damaged, cut short, misnamed)."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


# What a damaged or misnamed archive or compressed file raises while it is read; an OSError with
# an errno (disk full, permission) is the machine's trouble, not the file's, and is raised as it is.
DAMAGED = (tarfile.TarError, zipfile.BadZipFile, EOFError, lzma.LZMAError, zlib.error, OSError)


def selected(name, include, exclude):
    """Whether a member path passes the include globs (all when empty) and no exclude glob."""
    if include and not any(fnmatch.fnmatch(name, g) for g in include):
        return False
    return not any(fnmatch.fnmatch(name, g) for g in exclude)


def check_sha256(path, expected):
    """Delete `path` and raise when its sha256 differs from `expected`; return the actual digest."""
    actual = sha256_file(path)
    if expected and actual != expected:
        os.remove(path)
        raise DownloadError(f"sha256 mismatch for {os.path.basename(path)}: expected {expected}, got {actual}; the file was deleted")
    return actual


def fetch_url(url, dest, retries=4, timeout=60, backoff=0.5, log=print):
    """Stream `url` to `dest`, retrying connection errors, 5xx and truncated bodies with backoff."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        local = urllib.request.url2pathname(parsed.path)
        if not os.path.isfile(local):
            raise DownloadError(f"{url}: no such file")
        shutil.copyfile(local, dest)
        return dest
    if parsed.scheme not in ("http", "https"):
        raise DownloadError(f"unsupported URL scheme in {url!r}: use http, https or file")
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
                expected = r.headers.get("Content-Length")
                got = 0
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    got += len(chunk)
                if expected is not None and got != int(expected):
                    raise ConnectionError(f"truncated body: {got} of {expected} bytes")
            return dest
        except urllib.error.HTTPError as e:
            if e.code < 500:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            err = f"HTTP {e.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            err = str(e)
        if os.path.exists(dest):
            os.remove(dest)
        if attempt == retries:
            raise DownloadError(f"{url}: failed after {retries + 1} attempts: {err}")
        wait = backoff * 2**attempt
        log(f"{url}: {err}; retrying in {wait:.1f} s")
        time.sleep(wait)


def fetch_pypi(requirement, folder):
    """Fetch a source distribution with pip's own client; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
           "--quiet", "-d", folder, requirement]
    run = subprocess.run(cmd, capture_output=True, text=True)
    files = os.listdir(folder)
    if run.returncode != 0 or len(files) != 1:
        raise DownloadError(f"pip download {requirement} failed: {run.stderr.strip()[-2000:]}")
    return os.path.join(folder, files[0])


def _inside(root, name):
    parts = name.replace("\\", "/").split("/")
    target = os.path.realpath(os.path.join(root, name))
    return not os.path.isabs(name) and ".." not in parts and target.startswith(os.path.realpath(root) + os.sep)


def _safe_target(root, name, member=None):
    if not _inside(root, name):
        raise DownloadError(f"archive member {member or name!r} would land outside the target folder; refused")
    return os.path.join(root, name)


def _copy_stream(src, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def unpack(path, files_dir, include=(), exclude=(), name=None):
    """Unpack an archive, decompress a compressed file, or copy a plain file into `files_dir`;
    UnreadableFile names a file that its name says is an archive or compressed and is not."""
    name = name or os.path.basename(path)
    try:
        _unpack(path, files_dir, include, exclude, name)
    except DAMAGED as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        kind = "archive" if name.lower().endswith(ARCHIVE_SUFFIXES) else "compressed file"
        detail = str(e).splitlines()[0].rstrip(":") if str(e) else "cut short"
        raise UnreadableFile(path, f"not a readable {kind} ({type(e).__name__}: {detail})") from None


def _unpack(path, files_dir, include, exclude, name):
    lower = name.lower()
    if lower.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                target = _safe_target(files_dir, info.filename)
                mode = info.external_attr >> 16
                if (mode & 0o170000) == 0o120000:
                    raise DownloadError(f"archive member {info.filename!r} is a symbolic link; refused")
                if not info.is_dir() and selected(info.filename, include, exclude):
                    with z.open(info) as src:
                        _copy_stream(src, target)
    elif lower.endswith(ARCHIVE_SUFFIXES):
        with tarfile.open(path) as t:
            for m in t:
                _safe_target(files_dir, m.name)
                if m.issym() or m.islnk():
                    relative_to = "" if m.islnk() else os.path.dirname(m.name)
                    _safe_target(files_dir, os.path.join(relative_to, m.linkname), member=m.name)
                    continue  # links that stay inside are not materialised: documents are plain files
                if m.isfile() and selected(m.name, include, exclude):
                    try:  # the "data" filter also refuses device files and drops modes such as set-uid
                        t.extract(m, files_dir, filter="data")
                    except tarfile.FilterError as e:
                        raise DownloadError(f"archive member {m.name!r} refused: {e}") from None
    elif os.path.splitext(lower)[1] in COMPRESSED:
        stem = os.path.splitext(name)[0]
        with COMPRESSED[os.path.splitext(lower)[1]](path, "rb") as src:
            _copy_stream(src, os.path.join(files_dir, stem))
    else:
        os.makedirs(files_dir, exist_ok=True)
        shutil.copyfile(path, os.path.join(files_dir, name))


def local_files(pattern):
    """A local file, every file under a folder, or every file a glob matches: (path, relative name)."""
    if os.path.isfile(pattern):
        return [(pattern, os.path.basename(pattern))]
    if os.path.isdir(pattern):
        root = pattern
        paths = [os.path.join(d, f) for d, _, fs in os.walk(pattern) for f in fs]
    else:
        root = os.path.dirname(re.split(r"[*?\[]", pattern, maxsplit=1)[0])  # the folder before the first wildcard
        paths = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    if not paths:
        raise DownloadError(f"path {pattern!r} matches no file")
    return sorted((p, os.path.relpath(p, root)) for p in paths)


def source_files(name, source):
    """The local files a `path:` source reads, (path, relative name): those its include/exclude
    globs select, and archives (filtered member by member). The download rule takes them as
    inputs, so adding, editing or removing one reruns it and everything after it."""
    try:
        listed = local_files(source["path"])
    except DownloadError as e:
        raise DownloadError(f"source {name!r}: {e}") from None
    include, exclude = source.get("include") or [], source.get("exclude") or []
    return [(path, rel) for path, rel in listed
            if selected(rel, include, exclude) or (rel.lower().endswith(ARCHIVE_SUFFIXES) and selected(rel, [], exclude))]


def download_source(name, source, out_dir, log=print):
    """Fetch one configured source into `out_dir/files/`; return the manifest (also written by the caller)."""
    files_dir = os.path.join(out_dir, "files")
    os.makedirs(files_dir, exist_ok=True)
    include, exclude = source.get("include") or [], source.get("exclude") or []
    fetched = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".fetch-") as tmp:
        if source.get("path"):
            listed = source_files(name, source)
            if source.get("sha256"):  # a user's own file: a mismatch is reported, never deleted
                actual = sha256_file(listed[0][0]) if len(listed) == 1 else f"{len(listed)} files"
                if actual != source["sha256"]:
                    raise DownloadError(f"sha256 mismatch for {source['path']}: expected {source['sha256']}, got {actual}")
            for path, rel in listed:
                try:
                    unpack(path, os.path.join(files_dir, os.path.dirname(rel)), include, exclude)
                except UnreadableFile as e:
                    raise DownloadError(f"source {name!r}: {e}; if it is not part of the corpus, "
                                        f"leave it out with `exclude: [{rel!r}]`") from None
        else:
            if source.get("pypi"):
                path = fetch_pypi(source["pypi"], tmp)
            else:
                url_name = os.path.basename(urllib.parse.urlparse(source["url"]).path) or "download"
                path = fetch_url(source["url"], os.path.join(tmp, url_name), log=log)
            fetched = {"name": os.path.basename(path), "bytes": os.path.getsize(path), "sha256": check_sha256(path, source.get("sha256"))}
            if not source.get("sha256"):
                log(f"source {name!r}: sha256 {fetched['sha256']} (no sha256 in the config: the bytes are fetched once and "
                    f"kept; to fetch them again, add `--forcerun results/raw/{name}` to the snakemake command)")
            try:
                unpack(path, files_dir, include, exclude)
            except UnreadableFile as e:  # the fetched bytes go with the temporary folder: the next run fetches again
                raise DownloadError(f"source {name!r}: {source.get('url') or source['pypi']}: {e.reason}") from None
    files = []
    for d, _, fs in os.walk(files_dir):
        for f in fs:
            p = os.path.join(d, f)
            files.append({"path": os.path.relpath(p, files_dir), "bytes": os.path.getsize(p), "sha256": sha256_file(p)})
    if not files:
        raise DownloadError(f"source {name!r}: no file left after include {include} / exclude {exclude}")
    files.sort(key=lambda r: r["path"])
    return {"source": name, "fetched": fetched, "files": files, "bytes": sum(f["bytes"] for f in files)}
