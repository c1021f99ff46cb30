"""Download, ingest, clean, dedup and splits, without Snakemake."""

import collections
import functools
import gzip
import hashlib
import io
import json
import os
import random
import re
import tarfile
import unicodedata
import zipfile

import numpy as np
import pytest
import yaml

import lmcore.data.text as text_module
from helpers import SCHEMA, WORDS, QuietHandler, serve, write_corpus_archive
from lmcore.data import clean, dedup, download, formats, ingest
from lmcore.data.splits import split_of
from lmcore.io import atomic_open, read_jsonl, stable_hash, write_jsonl


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


def test_clean_drops_short_documents_with_reason_and_examples(tmp_path):
    docs = [{"id": "long", "text": ("word " * 50).rstrip() + "\n"}, {"id": "short", "text": "tiny"}]
    write_jsonl(tmp_path / "in.jsonl", docs)
    cfg = clean_config(
        min_chars=20, min_words=5, gopher_quality={"enabled": False}, gopher_repetition={"enabled": False}
    )
    stats = clean.clean_part(tmp_path / "in.jsonl", tmp_path / "out.jsonl", cfg)
    out = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [d["id"] for d in out] == ["long"]
    assert out[0]["text"] == ("word " * 50).rstrip() + "\n"
    assert (
        stats["dropped"] == {"min_chars": 1}
        and stats["dropped_characters"] == {"min_chars": 4}
        and stats["examples"] == {"min_chars": [{"id": "short", "excerpt": "tiny"}]}
    )


DEDUP = {
    "exact": True,
    "near": True,
    "ngram": 5,
    "bands": 10,
    "rows": 10,
    "threshold": 0.8,
    "seed": 0,
    "band_groups": 1,
    "key_ranges": 1,
}


def run_dedup(tmp_path, parts, **jobs):
    """Signatures per part, candidate pairs per band group and key range, clusters over all, as the workflow
    runs them; returns (stats, clusters file, part paths)."""
    cfg = {**DEDUP, **jobs}
    paths = []
    for k, docs in enumerate(parts):
        write_jsonl(tmp_path / f"p{k}.jsonl", docs)
        dedup.signatures(
            tmp_path / f"p{k}.jsonl", tmp_path / f"p{k}.json", tmp_path / f"p{k}.npy", tmp_path / f"p{k}.bands.npy", cfg
        )
        paths.append(tmp_path / f"p{k}.jsonl")
    npy = [tmp_path / f"p{k}.npy" for k in range(len(parts))]
    pairs = []
    for g in range(cfg["band_groups"]):
        for r in range(cfg["key_ranges"]):
            pairs.append(tmp_path / f"pairs-{g}-{r}.npy")
            dedup.candidate_pairs([tmp_path / f"p{k}.bands.npy" for k in range(len(parts))], npy, pairs[-1], g, r, cfg)
    json_paths = [tmp_path / f"p{k}.json" for k in range(len(parts))]
    stats = dedup.find_clusters(pairs, json_paths, npy, tmp_path / "clusters.json", cfg)
    return stats, json.loads((tmp_path / "clusters.json").read_text()), paths


def test_exact_dedup_ignores_case_digits_punctuation_and_keeps_smallest_id(tmp_path):
    part_a = [{"id": "b", "text": "Hello, World 1!"}, {"id": "c", "text": "something else entirely"}]
    part_b = [{"id": "a", "text": "hello world 2"}]
    stats, clusters, paths = run_dedup(tmp_path, [part_a, part_b])
    assert stats["documents_removed"] == 1 and clusters["removed"] == ["b"]
    dedup.apply_clusters(paths[0], tmp_path / "clusters.json", tmp_path / "a.out.jsonl")
    assert [d["id"] for d in read_jsonl(tmp_path / "a.out.jsonl")] == ["c"]


def long_document(seed, n_words=600):
    rng = random.Random(seed)
    return [rng.choice(WORDS) + str(rng.randint(0, 50)) for _ in range(n_words)]


def test_near_duplicates_are_found_and_unrelated_documents_kept(tmp_path):
    original = long_document(1)
    edited = list(original)
    for i in (50, 200, 350, 500):  # a few words changed in a long document
        edited[i] = "changed"
    docs = [
        {"id": "orig", "text": " ".join(original)},
        {"id": "edit", "text": " ".join(edited)},
        {"id": "other", "text": " ".join(long_document(2))},
        {"id": "copy", "text": " ".join(original)},
    ]
    stats, clusters, _ = run_dedup(tmp_path, [docs])
    [cluster] = clusters["clusters"]
    assert cluster["survivor"] == "copy" and cluster["members"] == ["copy", "edit", "orig"]
    edit, orig = cluster["removed"]  # each removed member with its survivor's estimated Jaccard
    assert (orig["id"], orig["exact"], orig["jaccard"]) == ("orig", True, 1.0)
    assert edit["id"] == "edit" and not edit["exact"] and 0.85 <= edit["jaccard"] < 1.0  # true Jaccard: about 0.93
    assert stats["documents_removed"] == 2 and stats["near_duplicate_pairs"] >= 1


def test_dedup_result_does_not_depend_on_the_number_of_parts(tmp_path):
    base = [long_document(s) for s in range(12)]
    docs = [{"id": f"d{i:02d}", "text": " ".join(base[i % 8] if i % 3 else base[i])} for i in range(12)]
    results = []
    for n_parts in (1, 3):
        folder = tmp_path / str(n_parts)
        folder.mkdir()
        parts = [[d for d in docs if stable_hash(d["id"]) % n_parts == k] for k in range(n_parts)]
        results.append(run_dedup(folder, parts)[1])
        folder = tmp_path / f"{n_parts}-split"
        folder.mkdir()
        results.append(run_dedup(folder, parts, band_groups=3, key_ranges=4)[1])  # 12 candidate-pair jobs
    assert all(r["clusters"] == results[0]["clusters"] for r in results) and results[0]["removed"]


def test_splits_are_stable_and_follow_the_fractions():
    fractions = {"validation": 0.1, "test": 0.2, "salt": ""}
    ids = [f"doc{i}" for i in range(5000)]
    first = [split_of(i, fractions) for i in ids]
    assert first == [split_of(i, fractions) for i in ids]
    assert abs(first.count("test") / 5000 - 0.2) < 0.03
    assert abs(first.count("validation") / 5000 - 0.1) < 0.03


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


def clean_config(**changes):
    from lmcore.config import prepare_config

    config = {
        "sources": {"s": {"path": "x"}},
        "tokenizers": {"t": {}},
        "models": {"m": {"tokenizer": "t", "d_model": 8, "n_layers": 1, "n_heads": 1}},
        "clean": {"min_chars": 0, "min_words": 0, **changes},
    }
    return prepare_config(config, SCHEMA)["clean"]


def prose_lines(n_lines=12, seed=0):
    """Distinct lines of ordinary words with stop words among them."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(n_lines)]


PROSE = "\n".join(prose_lines()) + "\n"


# A text each rule drops, by the reason it drops it for: the config key that fired.
DROPS = [
    ("word " * 30, "gopher_quality.min_words"),
    ("# " * 40 + PROSE, "gopher_quality.max_symbol_word_ratio"),
    ("\n".join("- " + line for line in prose_lines()), "gopher_quality.max_bullet_lines"),
    ("\n".join(line + "..." for line in prose_lines()), "gopher_quality.max_ellipsis_lines"),
    ("12 34 56 78 " * 10 + PROSE, "gopher_quality.min_alpha_words"),
    (" ".join(f"w{i}ord" for i in range(80)), "gopher_quality.min_stop_words"),
    (PROSE + "the same line and of that is here\n" * 10, "gopher_repetition.max_dup_line_char_frac"),
    ("lorem ipsum dolor sit amet " + PROSE, "c4.lorem_ipsum"),
    ("function f() { return 1 }\n" + PROSE, "c4.curly_braces"),
]


@pytest.mark.parametrize("text, reason", [(PROSE, None), *DROPS], ids=lambda v: v if v is None or " " not in v else "")
def test_each_rule_drops_for_the_config_key_that_fired(text, reason):
    assert clean.Cleaner(clean_config())(text)[1] == reason


@pytest.mark.parametrize("text, reason", DROPS, ids=lambda v: v if " " not in v else "")
def test_a_null_threshold_switches_off_that_rule_only(text, reason):
    section, key = reason.split(".")
    one_off = clean_config(**{section: {key: None}})
    assert clean.Cleaner(one_off)(text)[1] != reason
    assert len(clean.filters(one_off)) == len(clean.filters(clean_config())) - 1


def test_the_rules_table_is_the_schemas_clean_section():
    """Every threshold key of the schema belongs to one rule of clean.RULES (or C4's line removal), and
    every rule's keys are in the schema: a rule cannot be added to one and not the other."""
    schema = yaml.safe_load(open(SCHEMA, encoding="utf-8"))["properties"]["clean"]["properties"]
    groups = {name for name, spec in schema.items() if spec.get("type") == "object"}
    in_schema = {(None, k) for k in schema if k not in groups}
    in_schema |= {(g, k) for g in groups for k in schema[g]["properties"] if k != "enabled"}
    in_table = {(rule.group, key) for rule in clean.RULES for key in rule.keys}
    assert in_schema == in_table | {("c4", key) for key in clean.LINE_RULES}
    assert len(in_table) == sum(len(rule.keys) for rule in clean.RULES)  # no key read by two rules


def test_hashes_and_ellipses_are_tested_each_against_the_symbol_limit_as_gopher_does():
    words = PROSE.split()[:100]  # 100 words with 8 '#' and 8 ellipses: 0.08 each, 0.16 together
    text = " ".join(
        w + (" #" if i % 12 == 0 and i < 96 else "") + ("..." if i % 12 == 6 and i < 96 else "")
        for i, w in enumerate(words)
    )
    assert (text.count("#"), text.count("...")) == (8, 8)
    view = clean.TextView(text)
    assert (
        clean.gopher_symbol_ratio(0.1)(view) is None
        and clean.gopher_symbol_ratio(0.07)(view) == "max_symbol_word_ratio"
    )


def test_bullet_and_ellipsis_lines_and_letterless_words_count_as_gopher_defines_them():
    # 6 lines with text (blank ones count for neither side): bullets after spaces or a tab,
    # ellipses with only spaces after
    text = "\n".join(["  - one", "\t• two", "three...  ", "four … five…", "six ...seven", "x", "", "   "])
    view = clean.TextView(text)
    assert (
        clean.gopher_bullet_lines(0.34)(view) is None and clean.gopher_bullet_lines(0.33)(view) == "max_bullet_lines"
    )  # 2 of 6
    assert (
        clean.gopher_ellipsis_lines(0.34)(view) is None
        and clean.gopher_ellipsis_lines(0.33)(view) == "max_ellipsis_lines"
    )
    words = "1999 -- 3.14 __ é! e2e word, (a) x_1 ok"  # 4 of 10 words have no letter: digits, punctuation, underscores
    view = clean.TextView(words)
    assert clean.gopher_alpha_words(0.6)(view) is None and clean.gopher_alpha_words(0.61)(view) == "min_alpha_words"


def test_rules_run_in_the_tables_order_and_an_n_gram_of_a_rule_can_be_left_out():
    on = clean.filters(clean_config(min_chars=1, min_words=1))
    assert [rule for rule, _ in on] == list(clean.RULES)
    text = "cat dog " * 40  # the top 2-gram covers all of it
    quality_off = {"gopher_quality": {"enabled": False}}
    assert clean.Cleaner(clean_config(**quality_off))(text)[1] == "gopher_repetition.top_ngram_char_frac.2"
    without_2grams = clean_config(
        **quality_off, gopher_repetition={"top_ngram_char_frac": {"2": None, "3": 0.18, "4": 0.16}}
    )
    assert clean.Cleaner(without_2grams)(text)[1] == "gopher_repetition.top_ngram_char_frac.3"


def play(n_speeches=120, seed=0):
    """A play's shape: a speaker's name on its own line, then a few lines of verse; names repeat."""
    rng = random.Random(seed)
    speakers = ["FALSTAFF.", "MISTRESS QUICKLY.", "SIR HUGH EVANS.", "PAGE.", "FORD."]
    speeches = [
        rng.choice(speakers)
        + "\n"
        + "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 10))) for _ in range(rng.randint(1, 2)))
        for _ in range(n_speeches)
    ]
    return "\n\n".join(speeches) + "\n"


def web_page():
    """A shop's listing page: navigation and footer lines around items that repeat the same lines."""
    nav = "Home\nProducts\nAbout us\nContact\nLog in\n"
    items = "".join(
        f"{name} and the spare parts of it, sold to the trade\nAdd to cart\nFree delivery on all orders over fifty "
        "pounds\n"
        f"In stock, ships within one working day\n"
        for name in ("Garden chair", "Oak table", "Desk lamp", "Wool rug", "Bookshelf", "Mirror")
    )
    footer = (
        "Copyright 2024 Example Shop Ltd. All rights reserved.\nTerms and conditions of sale\n"
        "Follow us on social media\n"
    )
    return nav + items + footer + nav + footer


def test_plays_pass_the_duplicate_line_rule_and_boilerplate_does_not():
    text = play()
    lines = [line for line in text.split("\n") if line.strip()]
    assert clean._duplicate_share(lines)[0] > 0.3  # Gopher's share by line count would drop it
    assert clean.Cleaner(clean_config())(text)[1] is None
    assert clean.Cleaner(clean_config())(web_page())[1] == "gopher_repetition.max_dup_line_char_frac"
    by_count = clean_config(gopher_repetition={"max_dup_line_frac": 0.3})  # Gopher's rule, switched back on
    assert clean.Cleaner(by_count)(text)[1] == "gopher_repetition.max_dup_line_frac"


def test_duplicated_ngrams_are_caught():
    rng = random.Random(0)
    fresh = " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(200))
    repeated = " ".join(["the king and of that queen said to me"] * 8)
    assert clean.Cleaner(clean_config())(fresh + " the of and")[1] is None
    assert clean.Cleaner(clean_config())(fresh + " " + repeated)[1] == "gopher_repetition.dup_ngram_char_frac.5"


@pytest.mark.parametrize("n, limit", [(2, 0.2), (3, 0.18), (4, 0.16)])
def test_top_ngram_rule_decides_as_counting_the_ngrams_does(n, limit):
    """Gopher's rule, counted with tuples: the most frequent n-gram's occurrences x its characters,
    over all word characters. Words of one length, so that ties between n-grams do not matter."""
    rules = {
        "top_ngram_char_frac": {str(k): (limit if k == n else None) for k in (2, 3, 4)},
        "dup_ngram_char_frac": {},
        "max_dup_line_frac": None,
        "max_dup_line_char_frac": None,
        "max_dup_para_frac": None,
        "max_dup_para_char_frac": None,
    }
    cleaner = clean.Cleaner(
        clean_config(gopher_quality={"enabled": False}, c4={"enabled": False}, gopher_repetition=rules)
    )
    rng = random.Random(n)
    fired = 0
    for _ in range(400):
        vocab = ["cat", "dog", "sun", "sea", "owl", "elk", "fox", "yak"][: rng.choice([2, 4, 8])]
        words = [rng.choice(vocab) for _ in range(rng.randint(1, 120))]
        for _ in range(rng.randint(0, 12)):  # a phrase repeated here and there
            phrase = [rng.choice(vocab) for _ in range(n)]
            at = rng.randint(0, len(words))
            words[at:at] = phrase
        grams = collections.Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        top = max(grams.values(), default=0)
        fires = top >= 2 and top * 3 * n / (3 * len(words)) > limit
        expected = f"gopher_repetition.top_ngram_char_frac.{n}" if fires else None
        assert cleaner(" ".join(words))[1] == expected
        fired += expected is not None
    assert 40 < fired < 360  # both outcomes were tried


def test_a_long_document_is_read_in_pieces_with_the_same_words_and_decisions(monkeypatch):
    """Words are counted and hashed piece by piece, so that a document's memory stays a small multiple
    of its size; every rule decides as it does on the whole list of words."""
    rng = random.Random(5)
    texts = [
        play(),
        web_page(),
        PROSE,
        " ".join(["the king and of that queen said to me"] * 8) + PROSE,
        "12 34 56 78 " * 10 + PROSE,
        "no\u2003ordinary\u00a0spaces\tand\nlines " * 30,
        "x" * 500,
    ]
    texts += [" ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 400))) for _ in range(20)]
    for text in texts:
        for size in (1, 7, 64):
            assert "".join(clean.pieces(text, size)) == text
            assert [w for piece in clean.pieces(text, size) for w in piece.split()] == text.split()
    cleaner = clean.Cleaner(clean_config())
    whole = [cleaner(text) for text in texts]
    monkeypatch.setattr(text_module, "PIECE_CHARS", 16)
    assert [cleaner(text) for text in texts] == whole
    reasons = {None, "gopher_repetition.max_dup_line_char_frac", "gopher_quality.min_alpha_words"}
    assert {reason for _, reason in whole} > reasons


def test_dedup_reads_a_long_document_in_pieces_with_the_key_and_hashes_of_the_whole(monkeypatch):
    rng = random.Random(6)
    texts = [
        " ".join(rng.choice(WORDS) + rng.choice(["", ",", " 1999", "!"]) for _ in range(300)),
        "Ünïcode ﬁne café 12 34\n" * 40,
        "",
        "!!! ...",
    ]
    whole = []
    for text in texts:
        folded = dedup.WORD_CHARS.findall(dedup.DIGIT.sub("0", unicodedata.normalize("NFKC", text).lower()))
        whole.append(
            (hashlib.blake2b(" ".join(folded).encode(), digest_size=16).hexdigest(), text_module.WordHasher()(folded))
        )
    monkeypatch.setattr(text_module, "PIECE_CHARS", 16)
    for text, (key, hashes) in zip(texts, whole):
        got_key, got_hashes = dedup.fingerprint(text, text_module.WordHasher())
        assert got_key == key and np.array_equal(got_hashes, hashes)


def test_c4_removes_javascript_and_policy_lines():
    more = "\n".join(prose_lines(seed=1)) + "\n"
    text = PROSE + "Please enable JavaScript to view this page.\nRead our Privacy Policy.\n" + more
    cleaned, reason = clean.Cleaner(clean_config())(text)
    assert reason is None and cleaned == PROSE + more


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


def test_cleaning_that_drops_most_of_a_part_says_which_rule_did(tmp_path):
    docs = [{"id": f"d{i}", "text": "def f(x) { return x }\n" + PROSE} for i in range(3)] + [
        {"id": "ok", "text": PROSE}
    ]
    write_jsonl(tmp_path / "in.jsonl", docs)
    lines = []
    stats = clean.clean_part(tmp_path / "in.jsonl", tmp_path / "out.jsonl", clean_config(), log=lines.append)
    assert stats["dropped"] == {"c4.curly_braces": 3}
    assert len(lines) == 1 and lines[0].startswith("WARNING: dropped 3 of 4 documents, 3 of them for c4.curly_braces")
    lines.clear()
    clean.clean_part(tmp_path / "out.jsonl", tmp_path / "again.jsonl", clean_config(), log=lines.append)
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


def test_a_document_emptied_by_c4_line_removal_is_counted_for_it_with_what_it_held():
    """A one-line page mentioning the terms of use was counted as too_short_chars with 0 characters
    and an empty excerpt."""
    import tempfile

    page = "Welcome to the shop, read our terms of use before you buy anything from the many fine things here. " * 20
    docs = [{"id": "page", "text": page.strip()}, {"id": "short", "text": "tiny"}]
    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(os.path.join(tmp, "in.jsonl"), docs)
        stats = clean.clean_part(
            os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl"), clean_config(min_chars=20, min_words=5)
        )
    assert stats["dropped"] == {"c4.policy": 1, "min_chars": 1}
    assert stats["dropped_characters"] == {"c4.policy": len(page.strip()), "min_chars": 4}
    assert stats["examples"]["c4.policy"] == [{"id": "page", "excerpt": page[:200]}]


def test_a_document_too_long_for_a_jobs_memory_is_named_before_the_job_reads_it(tmp_path):
    from lmcore.data.memory import check_document_memory

    write_jsonl(
        tmp_path / "part-0.jsonl",
        [{"id": "small", "text": "a few words"}, {"id": "src/huge.txt", "text": "word " * 600_000}],
    )
    with pytest.raises(
        MemoryError,
        match=r"part-0\.jsonl: document 'src/huge\.txt' holds 3\.0 MB of JSON, and clean needs about "
        r"230 MB for it .* more than its mem_mb of 100: raise `resources\.clean\.mem_mb`",
    ):
        check_document_memory(tmp_path / "part-0.jsonl", "clean", 100)
    assert check_document_memory(tmp_path / "part-0.jsonl", "shard", 2000) == pytest.approx(212, abs=1)
