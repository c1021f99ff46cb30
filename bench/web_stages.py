"""The web stages, each alone in a process on a WARC corpus the bench writes: MB/s per core and peak memory,
beside datatrove's block for the same step on the same input where it has one.

    python bench/web_stages.py [--pages 3000] [--work /tmp/bench-web] [--datatrove /tmp/dtlib]

The corpus: pages of random words in sentences and paragraphs (a tenth in French words), each with
navigation, a script, a footer, an email address and an IP address, in a .warc.gz with a request beside
every response. Steps: WARC reading and extraction (trafilatura, and resiliparse), language
identification, FineWeb's rules, PII replacement, paragraph hashes. `--datatrove` names a folder holding
datatrove (`pip install --no-deps --target DIR datatrove loguru spacy "thinc<8.4" ...`, kept out of the
project's environment); its WarcReader + Trafilatura, FineWebQualityFilter and PIIFormatter run on the
same input. MB are of the step's input: WARC bytes for extraction, text for the rest.
"""

import argparse
import io
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WORDS, cpu_name, own_peak_mb, run_child  # noqa: E402

FRENCH = "le la les de des et est un une que qui dans pour pas sur au avec il elle nous vous roi reine".split()


def write_corpus(path, pages, seed=0):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for i in range(pages):
            words = FRENCH if i % 10 == 9 else list(WORDS)
            paragraphs = []
            for _ in range(rng.integers(3, 9)):
                sentences = [" ".join(rng.choice(words, rng.integers(6, 18))).capitalize() + "." for _ in range(4)]
                paragraphs.append(" ".join(sentences))
            paragraphs.append(f"Contact writer{i}@example.org, or our server at 8.8.{i % 250}.{i % 7}.")
            html = (
                f"<html><head><title>Page {i}</title><script>var t = {i};</script></head><body><nav><a href='/'>"
                "Home</a> <a href='/about'>About</a></nav><article>"
                + "".join(f"<p>{p}</p>" for p in paragraphs)
                + "</article><footer>Copyright 2026. All rights reserved.</footer></body></html>"
            ).encode()
            url = f"https://site{i % 97}.example/page/{i}"
            request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example")], is_http_request=True)
            writer.write_record(writer.create_warc_record(url, "request", http_headers=request))
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(
                writer.create_warc_record(url, "response", payload=io.BytesIO(html), http_headers=headers)
            )


def texts_of(path, extractor):
    """The pages' texts, as lmcore's ingest reads them."""
    from lmcore.data.web import extract, warc_pages

    out = []
    for _, page in warc_pages(path):
        if isinstance(page, dict):
            out.append(extract(page["html"], extractor))
    return out


def child(step, work, datatrove):
    """One step in this process: {"mb": input MB, "seconds": wall seconds, "items": n, "peak_mb": ...}. Wall,
    not CPU, time: datatrove's extractor runs trafilatura in a process of its own, which this one's CPU
    time would not count; each step is one job on an otherwise idle core."""
    if datatrove:
        sys.path.insert(0, datatrove)
    warc = os.path.join(work, "pages.warc.gz")
    with open(os.path.join(work, "texts.json")) as f:
        texts = json.load(f)
    text_mb = sum(len(t.encode()) for t in texts) / 1e6
    start = time.perf_counter()
    if step in ("extract-trafilatura", "extract-resiliparse"):
        n, mb = len(texts_of(warc, step.split("-")[1])), os.path.getsize(warc) / 1e6
    elif step == "language":
        from lmcore.data.language import Identifier

        identify = Identifier()
        n, mb = sum(identify(t)[0] == "en" for t in texts), text_mb
    elif step == "fineweb":
        from lmcore.config import prepare_config
        from lmcore.data.clean import Cleaner

        cfg = prepare_config(
            {"sources": {"s": {"path": "x"}}, "tokenizers": {"t": {}},
             "models": {"m": {"tokenizer": "t", "d_model": 8, "n_layers": 1, "n_heads": 1}},
             "clean": {"min_chars": 0, "min_words": 0, "gopher_quality": {"enabled": False},
                       "gopher_repetition": {"enabled": False}, "c4": {"enabled": False},
                       "fineweb": {"enabled": True}}},
            os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas", "config.schema.yaml"),
        )["clean"]  # fmt: skip
        cleaner = Cleaner(cfg)
        n, mb = sum(cleaner(t)[1] is None for t in texts), text_mb
    elif step == "pii":
        from lmcore.data.pii import replace_pii

        n, mb = sum(replace_pii(t)[0] != t for t in texts), text_mb
    elif step == "paragraph-hashes":
        from lmcore.data.paragraphs import normalise
        from lmcore.io import stable_hash

        n = sum(1 for t in texts for line in t.split("\n") if normalise(line) and stable_hash(normalise(line)))
        mb = text_mb
    elif step == "datatrove-extract":
        from datatrove.pipeline.extractors import Trafilatura
        from datatrove.pipeline.readers import WarcReader

        reader, extractor = WarcReader(work, glob_pattern="pages.warc.gz"), Trafilatura(favour_precision=True)
        n = sum(1 for _ in extractor.run(reader.run()))
        mb = os.path.getsize(warc) / 1e6
    elif step == "datatrove-fineweb":
        from datatrove.data import Document
        from datatrove.pipeline.filters import FineWebQualityFilter

        f = FineWebQualityFilter()
        n, mb = sum(f.filter(Document(text=t, id=str(i))) is True for i, t in enumerate(texts)), text_mb
    elif step == "datatrove-pii":
        from datatrove.pipeline.formatters import PIIFormatter

        f = PIIFormatter()
        n, mb = sum(f.format(t) != t for t in texts), text_mb
    seconds = time.perf_counter() - start
    print(json.dumps({"mb": mb, "seconds": seconds, "items": n, "peak_mb": own_peak_mb()}))


STEPS = ["extract-trafilatura", "extract-resiliparse", "language", "fineweb", "pii", "paragraph-hashes"]
DATATROVE = {"extract-trafilatura": "datatrove-extract", "fineweb": "datatrove-fineweb", "pii": "datatrove-pii"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--work", default="/tmp/bench-web")
    parser.add_argument("--datatrove", default=None)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, work, datatrove = args.child
        return child(step, work, datatrove if datatrove != "-" else None)
    os.makedirs(args.work, exist_ok=True)
    warc = os.path.join(args.work, "pages.warc.gz")
    write_corpus(warc, args.pages)
    with open(os.path.join(args.work, "texts.json"), "w") as f:
        json.dump(texts_of(warc, "trafilatura"), f)
    print(f"{args.pages:,} pages, {os.path.getsize(warc) / 1e6:.1f} MB of WARC (gzip); {cpu_name()}")
    print(f"{'step':<22} {'MB/s per core':>14} {'peak MB':>8} {'datatrove MB/s':>15} {'peak MB':>8} {'ratio':>6}")
    for step in STEPS:
        ours, ours_peak = run_child([__file__, "--child", step, args.work, "-"])
        line = f"{step:<22} {ours['mb'] / ours['seconds']:>14.2f} {ours_peak:>8.0f}"
        if args.datatrove and step in DATATROVE:
            theirs, theirs_peak = run_child([__file__, "--child", DATATROVE[step], args.work, args.datatrove])
            ratio = (ours["mb"] / ours["seconds"]) / (theirs["mb"] / theirs["seconds"])
            line += f" {theirs['mb'] / theirs['seconds']:>15.2f} {theirs_peak:>8.0f} {ratio:>5.1f}x"
            line += f"   (documents kept or changed: lmcore {ours['items']:,}, datatrove {theirs['items']:,})"
        print(line)


if __name__ == "__main__":
    main()
