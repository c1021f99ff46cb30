"""Download, ingest, clean, dedup and splits, without Snakemake."""
import io
import json
import os
import tarfile

import pytest

from conftest import serve, write_corpus_archive
from lmcore.data import clean, dedup, download, ingest
from lmcore.io import atomic_open, read_jsonl, write_jsonl
from lmcore.splits import split_of


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
        source = {"url": f"{base}/c.tar.gz", "sha256": sha, "include": ["corpus/texts/*.txt"], "exclude": ["*/doc001.txt"]}
        manifest = download.download_source("fake", source, str(tmp_path / "out"))
    paths = [f["path"] for f in manifest["files"]]
    assert paths == ["corpus/texts/copy_of_doc000.txt", "corpus/texts/doc000.txt", "corpus/texts/doc002.txt", "corpus/texts/short.txt"]
    assert manifest["fetched"]["sha256"] == sha


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


def test_ingest_decodes_bom_crlf_nfc_and_skips_binary(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    (files / "a.txt").write_bytes("\ufeffline one\r\nCafe\u0301 \xff\r\n".encode("utf-8").replace(b"\xc3\xbf", b"\xff"))
    (files / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    manifest = {"files": [{"path": "a.txt"}, {"path": "b.png"}]}
    parts = [str(tmp_path / f"part-{k}.jsonl") for k in range(3)]
    stats = ingest.ingest("src", str(tmp_path / "raw"), manifest, "file", parts)
    docs = [d for p in parts for d in read_jsonl(p)]
    assert [d["id"] for d in docs] == ["src/a.txt"]
    assert docs[0]["text"] == "line one\nCaf\u00e9 \ufffd\n"
    assert stats["skipped"] == {"b.png": "binary"} and stats["replaced_bytes"] == {"a.txt": 1}


def test_ingest_of_a_source_without_documents_names_the_source(tmp_path):
    (tmp_path / "raw" / "files").mkdir(parents=True)
    (tmp_path / "raw" / "files" / "x.bin").write_bytes(b"\x7fELF" + bytes(10))
    with pytest.raises(ValueError, match="'empty'"):
        ingest.ingest("empty", str(tmp_path / "raw"), {"files": [{"path": "x.bin"}]}, "file", [str(tmp_path / "p.jsonl")])


def test_clean_drops_short_documents_with_reason_and_examples(tmp_path):
    docs = [{"id": "long", "text": "word " * 50 + "  \x07\r\n"}, {"id": "short", "text": "tiny"}]
    write_jsonl(tmp_path / "in.jsonl", docs)
    stats = clean.clean_part(tmp_path / "in.jsonl", tmp_path / "out.jsonl", {"min_chars": 20, "min_words": 5})
    out = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [d["id"] for d in out] == ["long"]
    assert out[0]["text"] == ("word " * 50).rstrip() + "\n"
    assert stats["dropped"] == {"too_short_chars": 1} and stats["examples"] == {"too_short_chars": [{"id": "short", "excerpt": "tiny"}]}


def test_exact_dedup_ignores_case_digits_punctuation_and_keeps_smallest_id(tmp_path):
    part_a = [{"id": "b", "text": "Hello, World 1!"}, {"id": "c", "text": "something else"}]
    part_b = [{"id": "a", "text": "hello world 2"}]
    sigs = []
    for name, docs in (("a", part_a), ("b", part_b)):
        write_jsonl(tmp_path / f"{name}.jsonl", docs)
        dedup.signatures(tmp_path / f"{name}.jsonl", tmp_path / f"{name}.sig.json")
        sigs.append(tmp_path / f"{name}.sig.json")
    stats = dedup.find_clusters(sigs, tmp_path / "clusters.json")
    assert stats["documents_removed"] == 1
    assert json.loads((tmp_path / "clusters.json").read_text())["removed"] == ["b"]
    dedup.apply_clusters(tmp_path / "a.jsonl", tmp_path / "clusters.json", tmp_path / "a.out.jsonl")
    assert [d["id"] for d in read_jsonl(tmp_path / "a.out.jsonl")] == ["c"]


def test_splits_are_stable_and_follow_the_fractions():
    fractions = {"validation": 0.1, "test": 0.2, "salt": ""}
    ids = [f"doc{i}" for i in range(5000)]
    first = [split_of(i, fractions) for i in ids]
    assert first == [split_of(i, fractions) for i in ids]
    assert abs(first.count("test") / 5000 - 0.2) < 0.03
    assert abs(first.count("validation") / 5000 - 0.1) < 0.03
