"""Web pages: WARC files and HTML records to the main text of each page, the records that are no page
counted per reason (lmcore.data.web)."""

import gzip
import io
import json
import random
import uuid

import pytest

from lmcore.data.formats import BadFile
from test_ingest import run_ingest

ARTICLE = (
    "The river Tyne rises in two branches, the North Tyne and the South Tyne, which meet near Hexham. "
    "From there it flows east through Newcastle to the sea at Tynemouth, and for centuries it carried "
    "the coal of the Northumberland and Durham fields to London and to the ports of Europe. "
)


def page(title, body, charset="utf-8", meta_charset=None):
    """A page as sites write them: a head with a script and styles, navigation, the article, a footer."""
    meta = f'<meta charset="{meta_charset}">' if meta_charset else ""
    return f"""<!DOCTYPE html><html><head>{meta}<title>{title}</title>
<script>var tracking = {{"id": 42}}; function go() {{ return tracking; }}</script>
<style>body {{ font-family: sans-serif; }}</style></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/about">About us</a></li></ul></nav>
<main><article><h1>{title}</h1><p>{body}</p><p>{body}</p><p>{body}</p></article></main>
<footer>Copyright 2026 Example Ltd. All rights reserved. <a href="/privacy">Privacy</a></footer>
</body></html>""".encode(charset)


def write_warc(path, records, gz=True):
    """A WARC file of (url, status, content type, body) responses, each after its request, plus a warcinfo."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = random.Random(str(path.name))  # record ids of their own, the same on every run: the splits follow them

    def ids():
        return {"WARC-Record-ID": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}>"}

    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=gz)
        writer.write_record(writer.create_warcinfo_record(str(path), {"software": "lmcore tests"}))
        for url, status, content_type, body in records:
            request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True)
            writer.write_record(
                writer.create_warc_record(url, "request", http_headers=request, warc_headers_dict=ids())
            )
            headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
            response = writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=headers, warc_headers_dict=ids()
            )
            writer.write_record(response)


VOLGA = "Волга — крупнейшая река Европы, она течёт через всю Россию к Каспийскому морю. " * 3
LOIRE = "La Loire est le plus long fleuve de France, elle se jette dans l'océan Atlantique. " * 3
NO_TEXT = b"<html><head><script>var a = 1;</script></head><body></body></html>"
RECORDS = [
    ("https://example.com/tyne", "200 OK", "text/html; charset=utf-8", page("The Tyne", ARTICLE)),
    ("https://example.ru/volga", "200 OK", "text/html; charset=windows-1251", page("Волга", VOLGA, "windows-1251")),
    ("https://example.fr/loire", "200 OK", "text/html", page("La Loire", LOIRE, "iso-8859-1", "iso-8859-1")),
    ("https://example.com/missing", "404 Not Found", "text/html", b"<html><body>Not found</body></html>"),
    ("https://example.com/logo.png", "200 OK", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(100)),
    ("https://example.com/empty", "200 OK", "text/html", NO_TEXT),
]


@pytest.mark.parametrize("extractor", ["trafilatura", "resiliparse"])
def test_warc_pages_become_documents_of_their_main_text_and_other_records_are_counted(tmp_path, extractor):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    write_warc(files / "crawl-0.warc.gz", RECORDS[:3])
    write_warc(files / "crawl-1.warc", RECORDS[3:], gz=False)
    docs, stats = run_ingest("web", tmp_path / "raw", "warc", parts=2, extractor=extractor)
    by_url = {d["meta"]["url"]: d for d in docs}
    assert sorted(by_url) == ["https://example.com/tyne", "https://example.fr/loire", "https://example.ru/volga"]
    tyne = by_url["https://example.com/tyne"]
    assert ARTICLE.strip() in tyne["text"] and "tracking" not in tyne["text"] and "About us" not in tyne["text"]
    assert "Волга — крупнейшая река Европы" in by_url["https://example.ru/volga"]["text"]  # the header's charset
    assert "le plus long fleuve de France" in by_url["https://example.fr/loire"]["text"]  # the page's <meta> charset
    assert tyne["id"].startswith("web/<urn:uuid:") and tyne["meta"]["date"].startswith("20")
    assert stats["dropped"] == {"HTTP status 4xx": 1, "not HTML": 1, "no text extracted": 1}
    assert stats["records"] == {"a warcinfo record": 2, "a request record": 6}  # not pages: apart


def test_html_held_in_json_lines_records_is_extracted_with_their_id_and_meta(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    rows = [
        {"key": "a", "url": "https://example.com/tyne", "raw": page("The Tyne", ARTICLE).decode()},
        {"key": "b", "url": "https://example.com/none", "raw": NO_TEXT.decode()},
    ]
    with gzip.open(files / "pages.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    docs, stats = run_ingest("pages", tmp_path / "raw", {"html": "raw", "id": "key", "meta": ["url"]})
    assert [(d["id"], d["meta"]["url"]) for d in docs] == [("pages/a", "https://example.com/tyne")]
    assert ARTICLE.strip() in docs[0]["text"] and "<p>" not in docs[0]["text"]
    assert stats["dropped"] == {"no text extracted": 1}


def test_a_file_that_is_not_warc_is_named(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    (files / "notes.warc").write_text("just some text\n")
    with pytest.raises(BadFile, match="notes.warc: not a WARC file"):
        run_ingest("web", tmp_path / "raw", "warc")


TEXTS = {
    "en": "The committee met on Tuesday and agreed that the new bridge would open to traffic in the spring.",
    "fr": "Le comité s'est réuni mardi et a convenu que le nouveau pont serait ouvert à la circulation au printemps.",
    "de": "Der Ausschuss trat am Dienstag zusammen und beschloss, dass die neue Brücke im Frühjahr eröffnet wird.",
}


def language_config(**language):
    from test_clean import clean_config

    return clean_config(gopher_quality={"enabled": False}, gopher_repetition={"enabled": False},
                        language=language or {"enabled": True})  # fmt: skip


def test_each_documents_language_goes_into_its_meta_and_the_languages_not_kept_are_dropped(tmp_path):
    from lmcore.data.clean import clean_part
    from lmcore.io import read_jsonl, write_jsonl

    write_jsonl(tmp_path / "in.jsonl", [{"id": k, "text": t, "meta": {}} for k, t in TEXTS.items()])
    lines = []
    stats = clean_part(tmp_path / "in.jsonl", tmp_path / "out.jsonl", language_config(keep=["en"]), warn=lines.append)
    (doc,) = read_jsonl(tmp_path / "out.jsonl")
    assert doc["id"] == "en" and doc["meta"]["language"] == "en" and doc["meta"]["language_score"] > 0.65
    assert stats["dropped"] == {"language.keep": 2}
    assert stats["languages"] == {k: [1, len(t)] for k, t in TEXTS.items()}
    assert not lines  # only English went through the English rules
    clean_part(tmp_path / "in.jsonl", tmp_path / "all.jsonl", language_config(), warn=lines.append)
    assert len(list(read_jsonl(tmp_path / "all.jsonl"))) == 3
    assert len(lines) == 1 and "2 documents not in English (de 1, fr 1) went through c4" in lines[0]


def test_a_fasttext_model_file_identifies_the_languages_it_was_trained_on(tmp_path):
    import random

    import fasttext

    from lmcore.data.language import Identifier

    rng = random.Random(0)
    words = {lang: text.lower().replace(".", "").split() for lang, text in TEXTS.items()}
    with open(tmp_path / "train.txt", "w") as f:
        for i in range(600):
            lang = list(words)[i % 3]
            f.write(f"__label__{lang} " + " ".join(rng.choice(words[lang]) for _ in range(10)) + "\n")
    # character n-grams, as lid.176's: without them this fastText met NaN on such a small set
    model = fasttext.train_supervised(
        str(tmp_path / "train.txt"), epoch=10, lr=0.5, dim=16, minn=2, maxn=4, thread=1, verbose=0
    )
    model.save_model(str(tmp_path / "lid.bin"))
    identify = Identifier(str(tmp_path / "lid.bin"))
    for lang, text in TEXTS.items():
        label, score = identify(text + "\n" + text)
        assert label == lang and 0.5 < score <= 1.0


def clean_docs(tmp_path, docs, **cfg):
    """(kept documents, stats) of clean_part on `docs` with the text rules off and `cfg`."""
    from test_clean import clean_config

    from lmcore.data.clean import clean_part
    from lmcore.io import read_jsonl, write_jsonl

    write_jsonl(tmp_path / "in.jsonl", docs)
    config = clean_config(gopher_quality={"enabled": False}, gopher_repetition={"enabled": False}, **cfg)
    stats = clean_part(tmp_path / "in.jsonl", tmp_path / "out.jsonl", config, warn=lambda *a: None)
    return list(read_jsonl(tmp_path / "out.jsonl")), stats


def test_emails_and_public_ips_are_replaced_and_private_ones_kept(tmp_path):
    text = ("Write to jane.doe+news@mail.example.org or to [ops@10.1.2.3]. The server is at 8.8.8.8, "
            "the router at 192.168.0.1, the host itself 127.0.0.1; version 1.2.3.4.5 is no address.")  # fmt: skip
    (doc,), stats = clean_docs(tmp_path, [{"id": "a", "text": text, "meta": {}}], pii=True)
    assert "jane.doe" not in doc["text"] and doc["text"].count("email@example.com") == 2
    assert "8.8.8.8" not in doc["text"] and "at 192.0.2.1," in doc["text"]
    assert "192.168.0.1" in doc["text"] and "127.0.0.1" in doc["text"]
    assert stats["pii"] == {"email": 2, "ip": 1}


def test_mojibake_is_repaired_and_counted(tmp_path):
    broken = "The cafÃ© serves crÃ¨me brÃ»lÃ©e"  # UTF-8 read as Latin-1
    styled = "“Curly” quotes, a ﬁne ligature and ＦＵＬＬ width stay: they are text, not damage."
    docs = [{"id": "a", "text": broken, "meta": {}}, {"id": "b", "text": styled, "meta": {}}]
    out, stats = clean_docs(tmp_path, docs, fix_text=True)
    assert [d["text"] for d in out] == ["The café serves crème brûlée", styled]
    assert stats["fixed_text"] == 1


def test_blocked_urls_go_by_exact_url_subdomain_and_registered_domain_and_allow_makes_exceptions(tmp_path):
    (tmp_path / "block.txt").write_text("# spam\nspam.example\nbbc.co.uk\nhttps://good.example/bad-page\n")
    (tmp_path / "allow.txt").write_text("weather.bbc.co.uk\n")
    urls = {
        "spam": "https://www.spam.example/offer",  # a subdomain of a blocked domain
        "bbc": "http://news.bbc.co.uk/story",  # blocked by its registered domain
        "weather": "https://weather.bbc.co.uk/today",  # an exception
        "page": "https://good.example/bad-page#top",  # the exact URL
        "other": "https://good.example/fine",
        "notspam": "https://notspam.example/",  # a name that ends like a blocked one is not it
    }
    docs = [{"id": k, "text": "Some text.", "meta": {"url": u}} for k, u in urls.items()]
    docs.append({"id": "none", "text": "No URL.", "meta": {}})
    out, stats = clean_docs(
        tmp_path, docs, urls={"block": str(tmp_path / "block.txt"), "allow": str(tmp_path / "allow.txt")}
    )
    assert sorted(d["id"] for d in out) == ["none", "notspam", "other", "weather"]
    assert stats["dropped"] == {"urls.block": 3} and stats["urls"] == {"without a url": 1, "allowed": 1}


def english_page(rng, i):
    """An English article of a few paragraphs of sentences, with an author's address in it."""
    from helpers import WORDS

    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + "." for _ in range(30)]
    paragraphs = [" ".join(sentences[k : k + 5]) for k in range(0, 30, 5)]
    body = "".join(f"<p>{p}</p>" for p in paragraphs) + f"<p>Write to the author at writer{i}@mail.example.org.</p>"
    nav = '<nav><a href="/">Home</a> <a href="/news">News</a></nav>'
    return f"<html><head><title>Article {i}</title></head><body>{nav}<article>{body}</article></body></html>".encode()


@pytest.mark.slow
def test_the_web_config_runs_its_data_stages_on_a_local_stand_in(tmp_path):
    import os
    import random

    import yaml

    from helpers import REPO, serve, snakemake, write_config

    config = yaml.safe_load(open(os.path.join(REPO, "configs", "web.yaml")))
    source = config["sources"]["cc"]
    prefix = "https://data.commoncrawl.org/"
    (url,) = source["url"]
    assert url.startswith(prefix) and url.endswith(".warc.gz")
    rng = random.Random(0)
    english = [(f"https://site{i}.example/a", "200 OK", "text/html", english_page(rng, i)) for i in range(24)]
    french = [(f"https://site{i}.example/fr", "200 OK", "text/html; charset=iso-8859-1",
               page("La Loire", LOIRE * 4, "iso-8859-1")) for i in range(4)]  # fmt: skip
    (tmp_path / "www" / os.path.dirname(url[len(prefix) :])).mkdir(parents=True)
    write_warc(tmp_path / "www" / url[len(prefix) :], english + french + RECORDS[3:])
    (tmp_path / "block.txt").write_text("site3.example\n")
    config["sources"]["cc"].update(url=[url.replace(prefix, "{base}/")], parts=2)
    config["clean"]["urls"] = {"block": str(tmp_path / "block.txt")}
    config["tokenizers"]["bpe32k"].update(vocab_size=400)
    config["splits"] = {"validation": 0.1, "test": 0.1}
    config["models"]["gpt2_124m"].update(context_length=16, gpus=0)
    config["resources"] = {}
    with serve(tmp_path / "www") as base:
        config["sources"]["cc"]["url"] = [u.format(base=base) for u in config["sources"]["cc"]["url"]]
        configfile = write_config(tmp_path / "config.yaml", config)
        result = snakemake(tmp_path, "results/shards/bpe32k/manifest.json", configfile=configfile)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ingest = json.loads((tmp_path / "results/docs/cc/stats.json").read_text())
    assert ingest["documents"] == 24 + 4 and ingest["dropped"]["HTTP status 4xx"] == 1
    clean = [json.loads((tmp_path / f"results/clean/cc/part-{k}.stats.json").read_text()) for k in range(2)]
    kept = [json.loads(line) for k in range(2) for line in open(tmp_path / f"results/clean/cc/part-{k}.jsonl")]
    # site3.example's two pages blocked (URL lists run first), the other three French ones by language
    assert sum(s["dropped"].get("urls.block", 0) for s in clean) == 2
    assert sum(s["dropped"].get("language.keep", 0) for s in clean) == 3
    assert len(kept) == 23 and all(d["meta"]["language"] == "en" for d in kept)
    assert all("email@example.com" in d["text"] and "writer" not in d["text"] for d in kept)
    paragraphs = [json.loads((tmp_path / f"results/dedup/cc/part-{k}.stats.json").read_text()) for k in range(2)]
    # every page closes with the same address once PII is replaced: a repeat, removed from all but one
    assert sum(p["paragraphs"]["paragraphs_removed"] for p in paragraphs) == 22
