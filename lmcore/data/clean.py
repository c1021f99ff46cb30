"""Normalise documents, then drop the ones a filter rejects, each with a named reason.

Filters (each on or off, thresholds in the config's `clean:` section):
- length: characters and words;
- Gopher quality (Rae et al. 2021, appendix A): word count, mean word length,
  symbol-to-word ratio, bullet and ellipsis lines, alphabetic words, stop words;
- Gopher repetition: duplicate lines and paragraphs (share and characters), the most
  frequent 2-4-gram's character share, characters inside duplicated 5-10-grams;
- C4 rules (Raffel et al. 2020): lorem ipsum and curly braces drop the document,
  lines mentioning javascript or a policy are removed.
Defaults follow the papers, except where they would drop verse and plays (short,
repeated speaker lines, no final punctuation); see schemas/config.schema.yaml.
"""
import re
import unicodedata

import numpy as np

from lmcore.data.text import CONTROL, WordHasher, ngram_hashes, words
from lmcore.io import read_jsonl, write_jsonl

TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
EXAMPLES_PER_REASON = 5
EXCERPT_CHARS = 200
STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
NON_BLANK_LINE = re.compile(r"^.*\S.*$", re.MULTILINE)
BULLET_LINE = re.compile(r"^[ \t]*[●•*\-‣⁃◦▪]", re.MULTILINE)
ELLIPSIS_LINE = re.compile(r"(?:\.\.\.|…)\s*$", re.MULTILINE)
NO_LETTER_WORD = re.compile(r"(?<!\S)(?:[^\s\w]|[\d_])+(?!\S)")  # a word without a single letter
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def normalize(text):
    """NFC, LF line endings, control characters removed (tab and newline kept), trailing spaces stripped."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return TRAILING_SPACE.sub("", CONTROL.sub("", text))


def c4_lines(text, cfg):
    """(text without javascript and policy lines, drop reason or None)."""
    lower = text.lower()
    if cfg["lorem_ipsum"] and "lorem ipsum" in lower:
        return text, "c4_lorem_ipsum"
    if cfg["curly_braces"] and "{" in text:
        return text, "c4_curly_braces"
    unwanted = (("javascript",) if cfg["javascript"] else ()) + (POLICY if cfg["policy"] else ())
    if any(u in lower for u in unwanted):  # most documents have none: skip the line loop
        kept = []
        for line in text.split("\n"):
            low = line.lower()
            if (cfg["javascript"] and "javascript" in low) or (cfg["policy"] and any(p in low for p in POLICY)):
                continue
            kept.append(line)
        text = "\n".join(kept)
    return text, None


def gopher_quality(text, ws, cfg):
    n = len(ws)
    if not cfg["min_words"] <= n <= cfg["max_words"]:
        return "gopher_word_count"
    mean_len = sum(map(len, ws)) / n
    if not cfg["min_mean_word_length"] <= mean_len <= cfg["max_mean_word_length"]:
        return "gopher_mean_word_length"
    if (text.count("#") + text.count("...") + text.count("…")) / n > cfg["max_symbol_word_ratio"]:
        return "gopher_symbol_ratio"
    lines = len(NON_BLANK_LINE.findall(text))
    if lines and len(BULLET_LINE.findall(text)) / lines > cfg["max_bullet_lines"]:
        return "gopher_bullet_lines"
    if lines and len(ELLIPSIS_LINE.findall(text)) / lines > cfg["max_ellipsis_lines"]:
        return "gopher_ellipsis_lines"
    if 1 - len(NO_LETTER_WORD.findall(text)) / n < cfg["min_alpha_words"]:
        return "gopher_alpha_words"
    if len(STOP_WORDS.intersection(text.lower().split())) < cfg["min_stop_words"]:
        return "gopher_stop_words"
    return None


def _duplicate_share(pieces):
    """(share of pieces that repeat an earlier one, share of their characters)."""
    seen, dup, dup_chars = set(), 0, 0
    for p in pieces:
        if p in seen:
            dup += 1
            dup_chars += len(p)
        seen.add(p)
    total_chars = sum(map(len, pieces))
    return dup / max(1, len(pieces)), dup_chars / max(1, total_chars)


def _most_frequent(h):
    """(value, count) of the most frequent value of h; the smallest value among ties."""
    s = np.sort(h)
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    counts = np.diff(np.append(starts, len(s)))
    top = np.argmax(counts)
    return s[starts[top]], counts[top]


def _repeated(h):
    """Whether each value of h occurs more than once in h."""
    order = np.argsort(h)
    sorted_h = h[order]
    equal = sorted_h[1:] == sorted_h[:-1]
    repeated = np.zeros(len(h), dtype=bool)
    repeated[order[1:][equal]] = True
    repeated[order[:-1][equal]] = True
    return repeated


def gopher_repetition(text, ws, hashes, cfg):
    lines = [line for line in text.split("\n") if line.strip()]
    paragraphs = [p for p in re.split(r"\n{2,}", text) if p.strip()]
    line_frac, line_chars = _duplicate_share(lines)
    para_frac, para_chars = _duplicate_share(paragraphs)
    if (cfg.get("max_dup_line_frac") is not None and line_frac > cfg["max_dup_line_frac"]) or line_chars > cfg["max_dup_line_char_frac"]:
        return "gopher_duplicate_lines"
    if para_frac > cfg["max_dup_para_frac"] or para_chars > cfg["max_dup_para_char_frac"]:
        return "gopher_duplicate_paragraphs"
    lengths = np.fromiter(map(len, ws), dtype=np.int64, count=len(ws))
    total = lengths.sum()
    for n, limit in sorted(cfg["top_ngram_char_frac"].items(), key=lambda item: int(item[0])):
        h = ngram_hashes(hashes, int(n))
        if len(h) == 0:
            continue
        top, count = _most_frequent(h)
        if count > 1:
            first = int(np.argmax(h == top))
            if count * lengths[first : first + int(n)].sum() / total > limit:
                return f"gopher_top_{n}gram"
    limits = sorted((int(n), limit) for n, limit in cfg["dup_ngram_char_frac"].items())
    for k, (n, limit) in enumerate(limits):
        h = ngram_hashes(hashes, n)
        if len(h) == 0:
            continue
        # mark every word covered by a repeated n-gram: +1 at its start, -1 after its end
        starts = np.flatnonzero(_repeated(h))
        marks = np.bincount(starts, minlength=len(ws) + 1) - np.bincount(starts + n, minlength=len(ws) + 1)
        covered = np.cumsum(marks[:-1]) > 0
        share = lengths[covered].sum() / total
        if share > limit:
            return f"gopher_duplicate_{n}grams"
        # Words inside a repeated longer n-gram lie inside repeated shorter ones: once the
        # share is under every remaining limit, no longer n can fail.
        if share <= min(lim for _, lim in limits[k:]):
            break
    return None


class Cleaner:
    def __init__(self, cfg):
        self.cfg = cfg
        self.hash_words = WordHasher()

    def __call__(self, text):
        """(cleaned text, drop reason or None)."""
        cfg = self.cfg
        text = normalize(text)
        if cfg["c4"]["enabled"]:
            text, reason = c4_lines(text, cfg["c4"])
            if reason:
                return text, reason
        if len(text) < cfg["min_chars"]:
            return text, "too_short_chars"
        ws = words(text)
        if len(ws) < cfg["min_words"]:
            return text, "too_short_words"
        if cfg["gopher_quality"]["enabled"]:
            reason = gopher_quality(text, ws, cfg["gopher_quality"])
            if reason:
                return text, reason
        if cfg["gopher_repetition"]["enabled"]:
            reason = gopher_repetition(text, ws, self.hash_words(ws), cfg["gopher_repetition"])
            if reason:
                return text, reason
        return text, None


def clean_part(in_path, out_path, cfg, log=print):
    """Clean one part; return statistics: documents and characters in and out, drops per reason
    (documents and characters), and up to 5 examples (id and excerpt) per reason."""
    stats = {"documents_in": 0, "characters_in": 0, "documents_out": 0, "characters_out": 0, "dropped": {},
             "dropped_characters": {}, "examples": {}}
    cleaner = Cleaner(cfg)

    def kept():
        for doc in read_jsonl(in_path):
            stats["documents_in"] += 1
            stats["characters_in"] += len(doc["text"])
            doc["text"], reason = cleaner(doc["text"])
            if reason:
                stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1
                stats["dropped_characters"][reason] = stats["dropped_characters"].get(reason, 0) + len(doc["text"])
                examples = stats["examples"].setdefault(reason, [])
                if len(examples) < EXAMPLES_PER_REASON:
                    examples.append({"id": doc["id"], "excerpt": doc["text"][:EXCERPT_CHARS]})
                continue
            stats["documents_out"] += 1
            stats["characters_out"] += len(doc["text"])
            yield doc

    write_jsonl(out_path, kept())
    dropped = stats["documents_in"] - stats["documents_out"]
    if dropped > stats["documents_in"] / 2:
        reason, n = max(stats["dropped"].items(), key=lambda item: item[1])
        log(f"WARNING: dropped {dropped:,} of {stats['documents_in']:,} documents, {n:,} of them for {reason}; if that rule does not "
            f"suit this corpus, switch it off or loosen it under `clean:` in the config (see schemas/config.schema.yaml)")
    return stats
