"""Ingest: raw files to documents, decoded and normalised, and its statistics (lmcore.data.ingest)."""

import os

import pytest

from lmcore.data import formats, ingest


def run_ingest(name, raw, documents, parts=1, readers=None, **source):
    """Every ingest reader of a source whose files lie in raw/files, as the workflow runs them; returns
    (documents of every part, merged stats). Readers default to one per part, as in the workflow."""
    files_dir = os.path.join(raw, "files")
    manifest = {"files": []}
    for d, _, fs in sorted(os.walk(files_dir)):
        for f in sorted(fs):
            path = os.path.join(d, f)
            sha, lines = formats.line_index(path)
            manifest["files"].append(
                {"path": os.path.relpath(path, files_dir), "bytes": os.path.getsize(path), "lines": lines}
            )
    source = {"documents": documents, "parts": parts, **source}
    readers = readers or parts
    stats = []
    for k in range(readers):
        paths = [os.path.join(raw, f"reader-{k}", f"part-{j}.jsonl") for j in range(parts)]
        os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
        stats.append(ingest.ingest(name, files_dir, manifest, source, k, readers, paths))
    docs = [
        d
        for j in range(parts)
        for d in ingest.read_part(
            [os.path.join(raw, f"reader-{k}", f"part-{j}.jsonl") for k in range(readers)],
            unique_ids=isinstance(documents, dict) and "id" in documents,
        )
    ]
    return docs, ingest.merge_stats(name, stats, len(manifest["files"]))


def test_ingest_decodes_bom_crlf_nfc_and_skips_binary(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    (files / "a.txt").write_bytes(
        "\ufeffline\x00 one  \r\nCafe\u0301 \xff\x07\tend\r\n".encode("utf-8").replace(b"\xc3\xbf", b"\xff")
    )
    (files / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    docs, stats = run_ingest("src", str(tmp_path / "raw"), "file", parts=3)
    assert [d["id"] for d in docs] == ["src/a.txt"]
    assert docs[0]["text"] == "line one\nCaf\u00e9 \ufffd\tend\n"
    assert stats["skipped"] == {"b.png": "binary"} and stats["replaced_bytes"] == {"a.txt": 1}
    assert stats["control_characters"] == {"a.txt": 2}  # the NUL and the bell; tab and newlines stay
    assert ingest.skipped_files(stats) == "source 'src': 1 file skipped, not read as text: b.png (binary)"


def test_ingest_of_a_source_without_documents_names_the_source(tmp_path):
    (tmp_path / "raw" / "files").mkdir(parents=True)
    (tmp_path / "raw" / "files" / "x.bin").write_bytes(b"\x7fELF" + bytes(10))
    with pytest.raises(ValueError, match="'empty'"):
        run_ingest("empty", str(tmp_path / "raw"), "file")


def test_ingest_splits_on_a_delimiter_and_reads_jsonl_fields(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    (files / "stories.txt").write_text("Once upon a time.<|endoftext|>\nThe end came.<|endoftext|>  \n")
    (files / "rows.jsonl").write_text('{"text": "first row"}\n\n{"text": "second\\r\\nrow \\u0007", "other": 1}\n')
    split, _ = run_ingest("s", str(tmp_path / "raw"), {"split": "<|endoftext|>"}, parts=2)
    docs = sorted((d["id"], d["text"]) for d in split if d["meta"]["path"] == "stories.txt")
    assert docs == [("s/stories.txt#0", "Once upon a time."), ("s/stories.txt#1", "The end came.")]
    (files / "stories.txt").unlink()
    rows, _ = run_ingest("s", str(tmp_path / "raw"), {"jsonl": "text"}, parts=2)
    docs = sorted((d["id"], d["text"]) for d in rows)
    assert docs == [("s/rows.jsonl#1", "first row"), ("s/rows.jsonl#3", "second\nrow")]  # escapes are normalised too
    with pytest.raises(ValueError, match=r"rows\.jsonl:1: no field 'body' in this line \(keys \['text'\]\)"):
        run_ingest("s", str(tmp_path / "raw"), {"jsonl": "body"})
    (tmp_path / "raw" / "files" / "rows.jsonl").write_text('{"text": "fine"}\n{"text": "cut sh\n')
    with pytest.raises(
        ValueError,
        match=r"rows\.jsonl:2: not a JSON line \(Unterminated string starting at, column 10\): "
        r"'\{\"text\": \"cut sh'",
    ):
        run_ingest("s", str(tmp_path / "raw"), {"jsonl": "text"})
