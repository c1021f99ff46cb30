"""Corpus statistics, as datatrove's stats blocks give them: the distribution of document length in
characters, words and lines, per source and stage, and the top domains of sources whose documents carry a
URL. Histograms are counts per power-of-two bin (bin k holds values in [2^(k-1), 2^k), bin 0 the zeros), so
that parts merge by adding counts and memory is a few dozen integers whatever the corpus.
"""

import urllib.parse

BINS = 40  # up to 2^39: a trillion characters
TOP_DOMAINS = 50  # per part; merged parts keep the most frequent of what each part kept


def bin_of(value):
    return min(int(value).bit_length(), BINS - 1)


class Shape:
    """The length distributions and domains of the documents it is shown."""

    def __init__(self):
        self.chars, self.words, self.lines = [0] * BINS, [0] * BINS, [0] * BINS
        self.domains = {}

    def add(self, doc):
        text = doc["text"]
        self.chars[bin_of(len(text))] += 1
        self.words[bin_of(len(text.split()))] += 1
        self.lines[bin_of(text.count("\n") + 1 if text else 0)] += 1
        url = (doc.get("meta") or {}).get("url")
        if url:
            host = (urllib.parse.urlsplit(url).hostname or "").removeprefix("www.")
            self.domains[host] = self.domains.get(host, 0) + 1

    def to_json(self):
        top = sorted(self.domains.items(), key=lambda i: (-i[1], i[0]))[:TOP_DOMAINS]
        return {"chars": self.chars, "words": self.words, "lines": self.lines, "domains": dict(top)}


def merge_shapes(shapes):
    """One shape's JSON from several parts' (None where there are none)."""
    shapes = [s for s in shapes if s]
    if not shapes:
        return None
    merged = {key: [sum(col) for col in zip(*(s[key] for s in shapes))] for key in ("chars", "words", "lines")}
    domains = {}
    for s in shapes:
        for host, n in s["domains"].items():
            domains[host] = domains.get(host, 0) + n
    merged["domains"] = dict(sorted(domains.items(), key=lambda i: (-i[1], i[0]))[:TOP_DOMAINS])
    return merged


def median_bin(histogram):
    """The bin holding the median document; its range as (low, high)."""
    total, seen = sum(histogram), 0
    for k, n in enumerate(histogram):
        seen += n
        if total and seen >= total / 2:
            return (0, 0) if k == 0 else (2 ** (k - 1), 2**k)
    return (0, 0)


def source_stats(source, clean_stats):
    """One source's statistics from its parts' clean stats: documents and characters in and kept, drops per
    reason, languages, and the length distributions and domains in and kept."""
    total = {"source": source, "documents_in": 0, "characters_in": 0, "documents_out": 0, "characters_out": 0}
    dropped, languages = {}, {}
    for s in clean_stats:
        for key in ("documents_in", "characters_in", "documents_out", "characters_out"):
            total[key] += s[key]
        for reason, n in s["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
        for language, (n, chars) in s.get("languages", {}).items():
            count = languages.setdefault(language, [0, 0])
            count[0], count[1] = count[0] + n, count[1] + chars
    shapes = {stage: merge_shapes([s.get("shape", {}).get(stage) for s in clean_stats]) for stage in ("in", "out")}
    return {**total, "dropped": dropped, "languages": languages, "shape": shapes}
