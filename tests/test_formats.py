"""Real corpora in their real formats: parquet, JSON Lines plain/gzip/zstd, arrow folders; ids and
metadata carried, records selected by metadata, many URLs per source with resumed downloads."""

import gzip
import json
import os
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from helpers import REPO, QuietHandler, fake_document, serve, snakemake, write_config
from lmcore.data import download, formats
from test_ingest import run_ingest

ROWS = [
    {"text": f"document {i}" + " word" * (i % 7), "id": f"<urn:{i % 40}>", "url": f"https://x/{i}", "int_score": i % 5}
    for i in range(60)
]


def write_parquet(path, rows, row_group_size=8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)


def write_jsonl(path, rows, opener=open):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with opener(path, "wb") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows).encode())


def zstd_open(path, mode):
    return zstandard.ZstdCompressor().stream_writer(open(path, mode))


def write_arrow_folder(folder, rows, shards=2):
    """What `datasets`' save_to_disk writes: IPC stream files and two metadata files."""
    os.makedirs(folder, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    step = -(-len(rows) // shards)
    for k in range(shards):
        with pa.ipc.new_stream(os.path.join(folder, f"data-{k:05d}-of-{shards:05d}.arrow"), table.schema) as w:
            for batch in table.slice(k * step, step).to_batches(max_chunksize=5):
                w.write_batch(batch)
    for name in ("dataset_info.json", "state.json"):
        with open(os.path.join(folder, name), "w") as f:
            json.dump({"_data_files": []}, f)


SOURCE = {"id": "id", "meta": ["url"]}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "jsonl.gz", "jsonl.zst", "arrow"])
def test_every_format_gives_the_same_documents_ids_and_meta(tmp_path, fmt):
    files = tmp_path / "raw" / "files"
    halves = ROWS[:30], ROWS[30:]
    for k, rows in enumerate(halves):
        path = str(files / f"shard-{k}.{fmt}")
        if fmt == "parquet":
            write_parquet(path, rows)
        elif fmt == "arrow":
            write_arrow_folder(str(files / f"shard-{k}"), rows)
        else:
            write_jsonl(path, rows, {"jsonl": open, "jsonl.gz": gzip.open, "jsonl.zst": zstd_open}[fmt])
    kind = fmt.split(".")[0]
    docs, stats = run_ingest("web", str(tmp_path / "raw"), {kind: "text", **SOURCE}, parts=3)
    assert stats["documents"] == 60 and stats["dropped"] == {}
    by_id = {d["id"]: d for d in docs}
    # the corpus's ids, each made unique where it repeats (ids 0..39 come back at rows 40..59)
    assert sorted(by_id) == sorted([f"web/<urn:{i}>" for i in range(40)] + [f"web/<urn:{i}>~2" for i in range(20)])
    assert (
        by_id["web/<urn:3>~2"]["text"] == ROWS[43]["text"] and by_id["web/<urn:3>~2"]["meta"]["url"] == "https://x/43"
    )
    assert set(by_id["web/<urn:3>"]["meta"]) == {"source", "path", "url"}


def test_ids_without_an_id_field_are_paths_and_positions(tmp_path):
    write_parquet(str(tmp_path / "p" / "files" / "a.parquet"), ROWS[:20])
    docs, _ = run_ingest("s", str(tmp_path / "p"), {"parquet": "text"}, parts=2)
    assert sorted(d["id"] for d in docs) == sorted(f"s/a.parquet#{i}" for i in range(20))
    write_jsonl(str(tmp_path / "j" / "files" / "b.jsonl.gz"), ROWS[:3], gzip.open)
    docs, _ = run_ingest("s", str(tmp_path / "j"), {"jsonl": "text"})
    assert [d["id"] for d in docs] == ["s/b.jsonl.gz#1", "s/b.jsonl.gz#2", "s/b.jsonl.gz#3"]


def test_where_keeps_records_by_metadata_and_counts_each_condition(tmp_path):
    write_parquet(str(tmp_path / "raw" / "files" / "a.parquet"), ROWS + [{**ROWS[0], "text": None, "id": "null"}])
    where = {"int_score": {"min": 3}, "url": {"not_in": ["https://x/4"]}}
    docs, stats = run_ingest("s", str(tmp_path / "raw"), {"parquet": "text", **SOURCE}, parts=2, where=where)
    assert sorted(int(d["meta"]["url"].rsplit("/", 1)[1]) for d in docs) == [
        i for i in range(60) if i % 5 >= 3 and i != 4
    ]
    assert stats["dropped"] == {"where int_score >= 3": 36, 'where url not in ["https://x/4"]': 1, "text is null": 1}
    assert stats["dropped_characters"]["where int_score >= 3"] == sum(
        len(r["text"]) for r in ROWS if r["int_score"] < 3
    )
    with pytest.raises(formats.BadFile, match=r"s/a\.parquet#0: where url >= 3: the value is 'https://x/0'"):
        run_ingest("s", str(tmp_path / "raw"), {"parquet": "text"}, where={"url": {"min": 3}})


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("fake.parquet", b"plain text named .parquet\n", r"fake\.parquet: not a parquet file"),
        (
            "cut.jsonl.zst",
            None,
            r"cut\.jsonl\.zst: not a readable jsonl file \(EOFError: the zstd stream is cut short\)",
        ),
        ("cut.jsonl.gz", None, r"cut\.jsonl\.gz: not a readable jsonl file \(EOFError"),
        ("text.jsonl.gz", b"plain text named .gz\n", r"text\.jsonl\.gz: not a readable jsonl file \(BadGzipFile"),
        ("ints.parquet", [{"text": 1}], r"ints\.parquet: column 'text' holds int64, not text"),
        ("nested.jsonl", [{"text": {"a": 1}}], r"s/nested\.jsonl#1: field 'text' holds a dict, not text"),
        ("nofield.parquet", [{"body": "x"}], r"nofield\.parquet: no column 'text' \(columns: \['body'\]\)"),
    ],
)
def test_a_file_that_is_not_what_its_name_says_is_named(tmp_path, name, content, message):
    path = tmp_path / "raw" / "files" / name
    path.parent.mkdir(parents=True)
    if isinstance(content, list):
        (write_parquet if name.endswith("parquet") else write_jsonl)(str(path), content)
    elif content is None:
        opener = zstd_open if name.endswith(".zst") else gzip.open
        write_jsonl(str(path), ROWS * 50, opener)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    kind = "parquet" if name.endswith("parquet") else "jsonl"
    with pytest.raises(formats.BadFile, match=message):
        run_ingest("s", str(tmp_path / "raw"), {kind: "text"})


def test_a_config_that_reads_records_wrongly_fails_before_any_job_naming_the_key():
    from lmcore.config import ConfigError, prepare_config

    def config(**source):
        return {
            "sources": {"s": {"path": "x", **source}},
            "tokenizers": {"t": {"vocab_size": 400}},
            "models": {"m": {"tokenizer": "t", "d_model": 16, "n_layers": 1, "n_heads": 1}},
        }

    cases = [
        ({"documents": {"parquet": "text", "ids": "id"}}, r"sources\.s\.documents': .* not valid .*: How files become"),
        ({"documents": {"parquet": "text"}, "where": {"int_score": {"minimum": 3}}}, r"did you mean 'min'"),
        ({"where": {"a": {"min": 1}}}, r"sources\.s\.where': selects records by their fields; `documents: file`"),
        ({"path": None, "url": ["http://h/a", "http://h/b"], "sha256": "0" * 64}, r"one checksum for 2 URLs"),
    ]
    for source, message in cases:
        with pytest.raises(ConfigError, match=message):
            prepare_config(config(**source), os.path.join(REPO, "schemas", "config.schema.yaml"))


def test_a_compressed_bomb_stops_at_max_expansion_while_it_is_read(tmp_path):
    path = tmp_path / "raw" / "files" / "zeros.jsonl.zst"
    path.parent.mkdir(parents=True)
    row = (json.dumps({"text": "0" * 1_000_000}) + "\n").encode()
    with zstd_open(str(path), "wb") as f:
        for _ in range(20):
            f.write(row)
    with pytest.raises(formats.BadFile, match=r"zeros\.jsonl\.zst unpacks to more than 1,000,000 bytes, 10 times"):
        run_ingest("s", str(tmp_path / "raw"), {"jsonl": "text"}, max_expansion=10)
    docs, _ = run_ingest("s", str(tmp_path / "raw"), {"jsonl": "text"}, max_expansion=1e6)
    assert len(docs) == 20


def test_a_large_jsonl_file_is_cut_into_units_that_readers_share(tmp_path, monkeypatch):
    """Units of a plain JSON Lines file start at line starts; any number of readers gives the same documents."""
    monkeypatch.setattr(formats, "CHUNK_BYTES", 1000)
    files = tmp_path / "raw" / "files"
    write_jsonl(str(files / "big.jsonl"), ROWS * 3)
    write_jsonl(str(files / "small.jsonl"), ROWS[:5])
    sha, lines = formats.line_index(str(files / "big.jsonl"))
    data = (files / "big.jsonl").read_bytes()
    assert len(lines) > 5 and all(data[at - 1 : at] == b"\n" and data[:at].count(b"\n") + 1 == n for at, n in lines[1:])
    runs = {}
    for parts, readers in ((1, 1), (3, 3), (8, 8), (2, 5)):
        docs, stats = run_ingest("s", str(tmp_path / "raw"), {"jsonl": "text"}, parts=parts, readers=readers)
        runs[(parts, readers)] = sorted((d["id"], d["text"]) for d in docs)
        assert stats["files"] == 2
    assert len(runs[(1, 1)]) == 185 and all(r == runs[(1, 1)] for r in runs.values())
    assert runs[(1, 1)][0] == ("s/big.jsonl#1", ROWS[0]["text"])


def test_datasets_save_to_disk_folders_are_read_through_pyarrow(tmp_path):
    write_arrow_folder(str(tmp_path / "raw" / "files" / "train"), ROWS[:12], shards=3)
    docs, stats = run_ingest("hf", str(tmp_path / "raw"), {"arrow": "text"})
    assert sorted(d["text"] for d in docs) == sorted(r["text"] for r in ROWS[:12]) and stats["files"] == 3


def test_brace_patterns_expand_as_a_shell_does():
    assert download.expand_braces("https://h/s/{000..002}_00000.parquet") == [
        f"https://h/s/{i:03d}_00000.parquet" for i in range(3)
    ]
    assert download.expand_braces("x/{train,test}/{8..10}.jsonl") == [
        "x/train/8.jsonl",
        "x/train/9.jsonl",
        "x/train/10.jsonl",
        "x/test/8.jsonl",
        "x/test/9.jsonl",
        "x/test/10.jsonl",
    ]
    assert download.expand_braces("x/{id}.txt") == ["x/{id}.txt"]
    assert download.url_names(["https://h/a/x/1.pq", "https://h/a/y/1.pq"]) == ["x/1.pq", "y/1.pq"]


class CuttingHandler(QuietHandler):
    """Serves files; the first answer for each file stops halfway (a dropped connection), and Range is honoured."""

    cut, ranges = set(), []

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = int(re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-"))[1])
        CuttingHandler.ranges.append((self.path, start))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.path not in CuttingHandler.cut:
            CuttingHandler.cut.add(self.path)
            self.wfile.write(data[start : start + (len(data) - start) // 2])
        else:
            self.wfile.write(data[start:])
        self.close_connection = True


def test_many_urls_are_fetched_resumed_with_range_and_checked(tmp_path):
    www = tmp_path / "www" / "sample"
    for k in range(3):
        write_parquet(str(www / f"{k:03d}_00000.parquet"), ROWS[k * 20 : (k + 1) * 20])
    sha1 = download.sha256_file(str(www / "001_00000.parquet"))
    CuttingHandler.cut, CuttingHandler.ranges = set(), []
    handler = lambda *a, **k: CuttingHandler(*a, directory=str(tmp_path / "www"), **k)  # noqa: E731
    cache = str(tmp_path / "cache")
    with serve(handler=handler) as base:
        source = {
            "url": [
                f"{base}/sample/{{000,002}}_00000.parquet",
                {"url": f"{base}/sample/001_00000.parquet", "sha256": sha1},
            ]
        }
        manifest = download.download_source("web", source, str(tmp_path / "out"), cache, log=lambda *a: None)
        assert sorted(f["path"] for f in manifest["files"]) == [f"{k:03d}_00000.parquet" for k in range(3)]
        size = (www / "000_00000.parquet").stat().st_size
        assert ("/sample/000_00000.parquet", size // 2) in CuttingHandler.ranges  # resumed, not restarted
        assert not os.path.exists(cache)  # nothing left behind
        bad = {
            "url": [{"url": f"{base}/sample/001_00000.parquet", "sha256": "0" * 64}, f"{base}/sample/000_00000.parquet"]
        }
        with pytest.raises(download.DownloadError, match=r"001_00000\.parquet: sha256 mismatch"):
            download.download_source("web", bad, str(tmp_path / "out2"), cache, log=lambda *a: None)
        # the file that arrived stays for the next run, which fetches only what is missing
        assert [f for _, _, files in os.walk(cache) for f in files] == ["000_00000.parquet"]
        CuttingHandler.ranges = []
        bad["url"][0]["sha256"] = sha1
        download.download_source("web", bad, str(tmp_path / "out3"), cache, log=lambda *a: None)
        assert [p for p, _ in CuttingHandler.ranges] == ["/sample/001_00000.parquet"]
        with pytest.raises(download.DownloadError, match=r"/sample/404\.parquet: HTTP 404"):
            download.download_source("web", {"url": [f"{base}/sample/404.parquet"]}, str(tmp_path / "o4"), cache)


def fineweb_rows(shard, n, rng):
    """Rows with FineWeb-Edu's columns (text, id, dump, url, file_path, language, language_score, token_count,
    score, int_score) and prose long enough to pass cleaning."""
    rows = []
    for i in range(n):
        text = fake_document(rng, 30) if rng.random() > 0.1 else None
        score = rng.uniform(0.5, 4.5)
        rows.append(
            {
                "text": text,
                "id": f"<urn:uuid:{shard:03d}-{i:05d}>",
                "dump": "CC-MAIN-2024-10",
                "url": f"https://example.org/{shard}/{i}",
                "file_path": f"s3://commoncrawl/{shard}.warc.gz",
                "language": "en",
                "language_score": rng.uniform(0.6, 1.0),
                "token_count": 0 if text is None else len(text.split()),
                "score": score,
                "int_score": int(round(score)),
            }
        )
    return rows


@pytest.mark.slow
def test_the_fineweb_edu_config_runs_its_data_stages_on_a_local_stand_in(tmp_path):
    rng = random.Random(0)
    config = yaml.safe_load(open(os.path.join(REPO, "configs", "fineweb-edu.yaml")))
    source = config["sources"]["fineweb_edu"]
    prefix = "https://huggingface.co/datasets/"
    assert source["url"].startswith(prefix) and "{000..013}" in source["url"]
    shards = {k: fineweb_rows(k, 12, rng) for k in range(14)}
    root = tmp_path / "www" / "datasets"
    for k, rows in shards.items():
        write_parquet(str(root / f"HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/{k:03d}_00000.parquet"), rows, 5)
    # the same sources section, served from 127.0.0.1; tokenizer, splits and model sized for the stand-in
    config["tokenizers"]["bpe32k"].update(vocab_size=400, max_training_chars=10**6)
    config["splits"] = {"validation": 0.1, "test": 0.1}
    config["models"]["gpt2_124m"].update(context_length=16, gpus=0)
    config["resources"] = {}
    with serve(tmp_path / "www") as base:
        source.update(url=source["url"].replace(prefix, f"{base}/datasets/"), parts=3)
        configfile = write_config(tmp_path / "config.yaml", config)
        result = snakemake(tmp_path, "results/shards/bpe32k/manifest.json", configfile=configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = json.loads((tmp_path / "results/docs/fineweb_edu/stats.json").read_text())
    rows = [r for rs in shards.values() for r in rs]
    assert stats["files"] == 14 and stats["documents"] == sum(
        r["text"] is not None and r["int_score"] >= 3 for r in rows
    )
    assert stats["dropped"]["where int_score >= 3"] == sum(r["text"] is not None and r["int_score"] < 3 for r in rows)
    kept = [json.loads(line) for k in range(3) for line in open(tmp_path / f"results/clean/fineweb_edu/part-{k}.jsonl")]
    assert kept and all(d["meta"]["int_score"] >= 3 and d["meta"]["dump"] == "CC-MAIN-2024-10" for d in kept)
    assert all(re.fullmatch(r"fineweb_edu/<urn:uuid:\d{3}-\d{5}>", d["id"]) for d in kept)
    manifest = json.loads((tmp_path / "results/shards/bpe32k/manifest.json").read_text())
    assert manifest["tokens"]["train"] > 0
