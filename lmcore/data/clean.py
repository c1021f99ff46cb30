"""Drop the documents a cleaning rule rejects, each with a named reason (ingest normalised their text).

`RULES` is the one table of the rules: for each, the config keys of its thresholds (under a group of
the `clean:` section, or the section itself) and the function that builds it, in the order they run.
A rule is `(TextView) -> the key whose threshold fired | None`, and the drop reason is that key's
path in the config (`gopher_quality.max_symbol_word_ratio`, `min_chars`,
`gopher_repetition.top_ngram_char_frac.3`): the key to loosen if the rule does not suit a corpus.
A threshold of null switches its rule off (a rule with two bounds keeps the other), `enabled: false`
its group. C4's line removal (`c4.javascript`, `c4.policy`) runs before every rule; a document a
later rule drops only because of that removal is dropped for the removal's key.
Sources: Gopher (Rae et al. 2021, appendix A), C4 (Raffel et al. 2020), FineWeb (Penedo et al. 2024).
Defaults follow the papers, except where they would drop verse, plays and whole books (short repeated
speaker lines, no final punctuation, one file one document); the schema (schemas/config.schema.yaml) says where and why.
"""

import functools
import itertools
import re
from dataclasses import dataclass

import ftfy
import numpy as np

from lmcore.data.ingest import read_part
from lmcore.data.language import ENGLISH_RULES, Identifier
from lmcore.data.pii import replace_pii
from lmcore.data.stats import Shape
from lmcore.data.text import WordHasher, ngram_hashes, one_piece, pieces
from lmcore.data.urls import UrlFilter
from lmcore.io import write_jsonl
from lmcore.workflow.joblog import warn

EXAMPLES_PER_REASON = 5
EXCERPT_CHARS = 200
STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
BULLETS = ("●", "•", "*", "-", "‣", "⁃", "◦", "▪")  # what a bullet line starts with, after spaces and tabs
ELLIPSES = ("...", "…")
# ftfy repairs what decoding broke (mojibake, lossy sequences, C1 controls) and no more: its defaults also
# straighten curly quotes, split ligatures and fold full-width letters, which is text, not damage (datatrove's
# FTFYFormatter turns them off too); HTML entities stay as the extractor left them, NFC is ingest's.
FTFY = ftfy.TextFixerConfig(
    unescape_html=False, uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False,
    fix_line_breaks=False, normalization=None,
)  # fmt: skip
FINEWEB_STOP_CHARS = (".", "'", '"', "!", "?")  # what a line must end with to count as ending a sentence
LETTER = re.compile(r"[^\W\d_]")  # a word character but a digit or the underscore
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
LINE_RULES = {"javascript": ("javascript",), "policy": POLICY}  # c4's keys: the lines mentioning these go


class TextView:
    """A document's text and the views of it the rules share, each computed once, on first use.

    Words are counted, measured and hashed piece by piece (`pieces`), and no list of all the
    words of a long document is kept: a 50 MB document took 1.7 GB as a list of words, about
    a Python object of 57 bytes per word; here a word costs its length (int32) and hash (uint64)."""

    def __init__(self, text):
        self.text = text

    @functools.cached_property
    def lower(self):
        return self.text.lower()

    @functools.cached_property
    def lines(self):
        """The lines with something but whitespace on them."""
        return [line for line in self.text.split("\n") if line.strip()]

    def word_lists(self, text=None):
        """The words of the text (or of `text`, e.g. the lowercase one), a list per piece; the one list
        of a text of one piece is kept for the next rule."""
        if text is None and one_piece(self.text):
            return [self._words]
        return (piece.split() for piece in pieces(self.text if text is None else text))

    @functools.cached_property
    def _words(self):
        return self.text.split()

    @functools.cached_property
    def word_lengths(self):
        return _concat([np.fromiter(map(len, ws), dtype=np.int32, count=len(ws)) for ws in self.word_lists()], np.int32)

    @property
    def word_count(self):
        return len(self.word_lengths)

    @functools.cached_property
    def word_hashes(self):
        return _concat([_hash_words(ws) for ws in self.word_lists()], np.uint64)

    @functools.cached_property
    def letterless_words(self):
        """Words without a letter (digits, punctuation): most words are all letters, and need no search."""
        return sum(
            sum(1 for w in itertools.filterfalse(str.isalpha, ws) if not LETTER.search(w)) for ws in self.word_lists()
        )

    @functools.cached_property
    def stop_words(self):
        """The distinct stop words among the lowercase words."""
        return set().union(*(STOP_WORDS.intersection(ws) for ws in self.word_lists(self.lower)))

    def top_ngram(self, n):
        """(hash, count, first position) of the most frequent word n-gram; None when the text has no n-gram."""
        cache = self.__dict__.setdefault("_top_ngrams", {})
        if n not in cache:
            h = ngram_hashes(self.word_hashes, n)
            top, count = _most_frequent(h) if len(h) else (None, 0)
            cache[n] = (top, count, int(np.argmax(h == top))) if len(h) else None
        return cache[n]


def _concat(arrays, dtype):
    return np.concatenate(arrays) if len(arrays) != 1 else arrays[0] if arrays else np.zeros(0, dtype=dtype)


def remove_c4_lines(view, keys):
    """C4: (the view of the text without its lines that mention what LINE_RULES names for `keys`, the key of
    the first line removed); (`view` itself, None) when there is none."""
    unwanted = [(key, LINE_RULES[key]) for key in keys]
    if not any(u in view.lower for _, words in unwanted for u in words):  # most documents have none
        return view, None
    kept, fired = [], None
    for line, low in zip(view.text.split("\n"), view.lower.split("\n")):
        hit = next((key for key, words in unwanted if any(u in low for u in words)), None)
        if hit is None:
            kept.append(line)
        fired = fired or hit
    return TextView("\n".join(kept)), fired


# Word hashes are remembered across documents (bounded: WordHasher empties its cache when full).
_hash_words = WordHasher()


def above(x, limit):
    return limit is not None and x > limit


# Length.


def too_short_chars(min_chars):
    return lambda v: "min_chars" if len(v.text) < min_chars else None


def too_short_words(min_words):
    return lambda v: "min_words" if v.word_count < min_words else None


# Gopher quality rules.


def bound(x, low, high, low_key, high_key):
    """The key of the bound x lies beyond (below `low` or above `high`); a bound of None is no bound."""
    return low_key if low is not None and x < low else high_key if high is not None and x > high else None


def gopher_word_count(min_words, max_words):
    return lambda v: bound(v.word_count, min_words, max_words, "min_words", "max_words")


def gopher_mean_word_length(low, high):
    def test(v):
        n = v.word_count
        return n and bound(v.word_lengths.sum() / n, low, high, "min_mean_word_length", "max_mean_word_length") or None

    return test


def gopher_symbol_ratio(limit):
    """Gopher tests the hash and the ellipsis each against one limit per word, not their sum."""

    def test(v):
        n = max(1, v.word_count)
        hashes, ellipses = v.text.count("#"), v.text.count("...") + v.text.count("…")
        return "max_symbol_word_ratio" if above(hashes / n, limit) or above(ellipses / n, limit) else None

    return test


def gopher_bullet_lines(limit):
    def test(v):
        lines = v.lines
        bullets = sum(1 for line in lines if line.lstrip(" \t").startswith(BULLETS))
        return "max_bullet_lines" if lines and above(bullets / len(lines), limit) else None

    return test


def gopher_ellipsis_lines(limit):
    def test(v):
        lines = v.lines
        if not lines or not any(e in v.text for e in ELLIPSES):
            return None
        ending = sum(1 for line in lines if line.rstrip().endswith(ELLIPSES))
        return "max_ellipsis_lines" if above(ending / len(lines), limit) else None

    return test


def gopher_alpha_words(min_share):
    def test(v):
        return "min_alpha_words" if v.word_count and 1 - v.letterless_words / v.word_count < min_share else None

    return test


def gopher_stop_words(min_count):
    return lambda v: "min_stop_words" if len(v.stop_words) < min_count else None


# Gopher repetition rules.


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


def duplicates_above(shares, limits, keys):
    """The key of the first (share, limit) pair whose share is above its limit."""
    return next((key for share, limit, key in zip(shares, limits, keys) if above(share, limit)), None)


def gopher_duplicate_lines(max_share, max_char_share):
    """Lines that repeat an earlier line: too large a share of the lines, or of the characters."""
    keys = ("max_dup_line_frac", "max_dup_line_char_frac")
    return lambda v: duplicates_above(_duplicate_share(v.lines), (max_share, max_char_share), keys)


def gopher_duplicate_paragraphs(max_share, max_char_share):
    keys = ("max_dup_para_frac", "max_dup_para_char_frac")

    def test(v):
        paragraphs = [p for p in re.split(r"\n{2,}", v.text) if p.strip()]
        return duplicates_above(_duplicate_share(paragraphs), (max_share, max_char_share), keys)

    return test


def gopher_top_ngrams(limits):
    """For each n of `limits` ({"n": limit or None}), smallest first: the most frequent word n-gram covers
    more than `limit` of the characters (its count x its length)."""
    tests = [top_ngram(int(n), limit) for n, limit in sorted(limits.items(), key=lambda i: int(i[0])) if limit]
    return lambda v: next((fired for fired in (test(v) for test in tests) if fired), None)


def top_ngram(n, limit):
    reason = f"top_ngram_char_frac.{n}"

    def test(v):
        lengths = v.word_lengths
        if len(lengths) < n:
            return None
        if n > 2:
            # no n-gram occurs more often than the top 2-gram (its first two words occur wherever it
            # does) nor is longer than the longest n words in a row: below that bound, no need to count
            span = np.cumsum(lengths, dtype=np.int64)
            longest = (span[n - 1 :] - np.concatenate(([0], span[:-n]))).max()
            if v.top_ngram(2)[1] * longest <= limit * span[-1]:
                return None
        top, count, first = v.top_ngram(n)
        if count < 2:
            return None
        return reason if count * lengths[first : first + n].sum() / lengths.sum() > limit else None

    return test


def gopher_duplicate_ngrams(limits):
    """For each n of `limits` ({"n": limit or None}), words inside n-grams that occur more than once cover
    more than limit of the characters.

    One unit for every n: words inside a repeated longer n-gram lie inside repeated shorter
    ones, so once the share is under every remaining limit, no longer n can fail."""
    limits = sorted((int(n), limit) for n, limit in limits.items() if limit is not None)

    def test(v):
        lengths = v.word_lengths
        for k, (n, limit) in enumerate(limits):
            h = ngram_hashes(v.word_hashes, n)
            if len(h) == 0:
                continue
            # mark every word covered by a repeated n-gram: +1 at its start, -1 after its end
            starts = np.flatnonzero(_repeated(h))
            marks = np.bincount(starts, minlength=len(lengths) + 1) - np.bincount(
                starts + n, minlength=len(lengths) + 1
            )
            share = lengths[np.cumsum(marks[:-1]) > 0].sum() / lengths.sum()
            if share > limit:
                return f"dup_ngram_char_frac.{n}"
            if share <= min(lim for _, lim in limits[k:]):
                break
        return None

    return test


# FineWeb rules (Penedo et al. 2024, section 3.3; datatrove's FineWebQualityFilter).


def fineweb_line_punctuation(min_share):
    def test(v):
        lines = v.lines
        ending = sum(1 for line in lines if line.endswith(FINEWEB_STOP_CHARS))
        return "min_line_punct_ratio" if lines and ending / len(lines) < min_share else None

    return test


def fineweb_short_lines(max_share, short_chars):
    def test(v):
        lines = v.lines
        short = sum(1 for line in lines if len(line) <= short_chars)
        return "max_short_line_ratio" if lines and above(short / len(lines), max_share) else None

    return test


def fineweb_duplicate_line_chars(max_share):
    """The characters of lines that repeat an earlier line, over all the lines' characters."""
    return lambda v: "max_dup_line_char_ratio" if above(_duplicate_share(v.lines)[1], max_share) else None


def fineweb_newlines(max_ratio):
    """Newlines per word: a page that is a list of short items."""
    return lambda v: "max_newline_word_ratio" if above(v.text.count("\n") / max(1, v.word_count), max_ratio) else None


# C4 rules.


def c4_lorem_ipsum(on):
    return lambda v: "lorem_ipsum" if "lorem ipsum" in v.lower else None


def c4_curly_braces(on):
    """As C4's code applies it (tfds c4_utils): a brace in a line that C4 keeps, of 3 words or more (C4 first
    removes shorter lines); the paper's "any page with a curly bracket" would count a lone `{` line too."""

    def test(v):
        if "{" not in v.text:
            return None
        return "curly_braces" if any("{" in line and len(line.split()) >= 3 for line in v.lines) else None

    return test


@dataclass(frozen=True)
class Rule:
    """A cleaning rule: its thresholds are `keys` of the `clean:` section's `group` (None: of the section
    itself); `make(*thresholds)` builds it."""

    group: str | None
    keys: tuple
    make: object

    @property
    def name(self):
        return self.make.__name__

    def reason(self, key):
        """The drop reason for the key that fired: its path in the config."""
        return f"{self.group}.{key}" if self.group else key


def switched_off(value):
    return value is None or value is False or (isinstance(value, dict) and all(v is None for v in value.values()))


# Sections of `clean:` that are steps of their own, not rules of the table: in the order they run, URL lists
# and ftfy before language identification, then the rules, then PII replacement in what was kept.
STEPS = ("urls", "fix_text", "language", "pii")

# Every rule, in the order they run: the first that fires names the reason.
RULES = (
    Rule("c4", ("lorem_ipsum",), c4_lorem_ipsum),
    Rule("c4", ("curly_braces",), c4_curly_braces),
    Rule(None, ("min_chars",), too_short_chars),
    Rule(None, ("min_words",), too_short_words),
    Rule("gopher_quality", ("min_words", "max_words"), gopher_word_count),
    Rule("gopher_quality", ("min_mean_word_length", "max_mean_word_length"), gopher_mean_word_length),
    Rule("gopher_quality", ("max_symbol_word_ratio",), gopher_symbol_ratio),
    Rule("gopher_quality", ("max_bullet_lines",), gopher_bullet_lines),
    Rule("gopher_quality", ("max_ellipsis_lines",), gopher_ellipsis_lines),
    Rule("gopher_quality", ("min_alpha_words",), gopher_alpha_words),
    Rule("gopher_quality", ("min_stop_words",), gopher_stop_words),
    Rule("gopher_repetition", ("max_dup_line_frac", "max_dup_line_char_frac"), gopher_duplicate_lines),
    Rule("gopher_repetition", ("max_dup_para_frac", "max_dup_para_char_frac"), gopher_duplicate_paragraphs),
    Rule("gopher_repetition", ("top_ngram_char_frac",), gopher_top_ngrams),
    Rule("gopher_repetition", ("dup_ngram_char_frac",), gopher_duplicate_ngrams),
    Rule("fineweb", ("min_line_punct_ratio",), fineweb_line_punctuation),
    Rule("fineweb", ("max_short_line_ratio", "short_line_chars"), fineweb_short_lines),
    Rule("fineweb", ("max_dup_line_char_ratio",), fineweb_duplicate_line_chars),
    Rule("fineweb", ("max_newline_word_ratio",), fineweb_newlines),
)


def filters(cfg):
    """(rule, test) of every rule of RULES that a `clean:` config switches on, in the order they run. A rule
    whose thresholds are all null (or false), or whose group has `enabled: false`, is left out."""
    on = []
    for rule in RULES:
        section = cfg[rule.group] if rule.group else cfg
        thresholds = [section[key] for key in rule.keys]
        if section.get("enabled", True) and not all(map(switched_off, thresholds)):
            on.append((rule, rule.make(*thresholds)))
    return on


class Cleaner:
    """Remove C4's lines, then run the filters of `cfg` on a text as ingest normalised it:
    `(cleaned text, drop reason or None)`."""

    def __init__(self, cfg):
        self.line_keys = [key for key in LINE_RULES if cfg["c4"]["enabled"] and cfg["c4"][key]]
        self.filters = filters(cfg)

    def __call__(self, text):
        whole = TextView(text)  # ingest normalised it
        view, removed = remove_c4_lines(whole, self.line_keys)
        for rule, test in self.filters:
            fired = test(view)
            if fired:
                # A document that passes the rule whole fails it for the lines C4 removed (a one-line page
                # that mentions a "terms of use" is emptied): the line removal is the reason.
                if removed and not test(whole):
                    return view.text, f"c4.{removed}"
                return view.text, rule.reason(fired)
        return view.text, None


class Language:
    """`clean.language`: each document's language and score into its meta, counted per language (documents,
    characters), and the documents whose language is not kept, or whose score is below min_score, dropped."""

    def __init__(self, cfg):
        self.keep, self.min_score = set(cfg["keep"]), cfg["min_score"]
        self.identify = Identifier(cfg["model_file"])
        self.passed = {}  # documents kept per language, for the English-only rules' warning

    def __call__(self, doc, stats):
        """The drop reason, or None; the document's meta gets `language` and `language_score`."""
        language, score = self.identify(doc["text"])
        meta = doc.setdefault("meta", {})
        meta["language"], meta["language_score"] = language, round(score, 4)
        count = stats["languages"].setdefault(language, [0, 0])
        count[0] += 1
        count[1] += len(doc["text"])
        if self.keep and language not in self.keep:
            return "language.keep"
        if self.min_score is not None and score < self.min_score:
            return "language.min_score"
        self.passed[language] = self.passed.get(language, 0) + 1
        return None

    def warn_unsuited(self, cfg, warn):
        """Gopher's and C4's rules were written for English: say so when other languages went through them."""
        rules = [group for group in ENGLISH_RULES if cfg[group]["enabled"]]
        others = {lang: n for lang, n in self.passed.items() if lang != "en"}
        if rules and others:
            shown = ", ".join(f"{lang} {n:,}" for lang, n in sorted(others.items(), key=lambda i: (-i[1], i[0]))[:5])
            warn(
                f"{sum(others.values()):,} documents not in English ({shown}) went through {', '.join(rules)}, "
                "whose rules were written for English (stop words, word lengths, policy lines); switch them off "
                "with `enabled: false` for such a corpus, or keep only English with `language: {keep: [en]}`"
            )


def clean_part(in_paths, out_path, cfg, unique_ids=False, warn=warn):
    """Clean one part, read from every ingest reader's file of it (lmcore.data.ingest.read_part); return
    statistics: documents and characters in and out, drops per reason (documents and characters), and up
    to 5 examples (id and excerpt) per reason. Dropping most of the part is a warning on the console.
    Conversations pass untouched and counted: the rules measure pages and books (Gopher's 50 words at
    least, C4's final punctuation), which most turns of a dialogue are not."""
    stats = {
        "documents_in": 0,
        "characters_in": 0,
        "documents_out": 0,
        "characters_out": 0,
        "dropped": {},
        "dropped_characters": {},
        "examples": {},
        "conversations": 0,  # passed untouched
        "languages": {},  # language -> [documents, characters], where clean.language is enabled
        "urls": {"without a url": 0, "allowed": 0},  # where clean.urls is set
        "fixed_text": 0,  # documents ftfy changed (clean.fix_text)
        "pii": {"email": 0, "ip": 0},  # replacements (clean.pii)
    }
    cleaner = Cleaner(cfg)
    lang = cfg.get("language", {})
    language = Language(lang) if lang.get("enabled") or lang.get("keep") else None
    urls = UrlFilter(cfg["urls"]) if cfg.get("urls", {}).get("block") else None

    shape_in, shape_out = Shape(), Shape()

    def kept():
        for doc in read_part(in_paths, unique_ids):
            whole = doc["text"]
            shape_in.add(doc)
            stats["documents_in"] += 1
            stats["characters_in"] += len(whole)
            reason = urls(doc, stats) if urls else None
            if reason is None and cfg.get("fix_text") and "messages" not in doc:
                doc["text"] = fixed = ftfy.fix_text(whole, FTFY)
                stats["fixed_text"] += fixed != whole
            if reason is None and language:
                reason = language(doc, stats)
            if reason is None and "messages" in doc:  # the rules judge prose: a conversation's turns pass
                stats["conversations"] += 1
            elif reason is None:
                doc["text"], reason = cleaner(doc["text"])
            if reason is None and cfg.get("pii"):
                doc["text"], found = replace_pii(doc["text"])
                for kind, n in found.items():
                    stats["pii"][kind] += n
            if reason:  # counted and shown as the document came in: what the corpus lost
                stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1
                stats["dropped_characters"][reason] = stats["dropped_characters"].get(reason, 0) + len(whole)
                examples = stats["examples"].setdefault(reason, [])
                if len(examples) < EXAMPLES_PER_REASON:
                    examples.append({"id": doc["id"], "excerpt": whole[:EXCERPT_CHARS]})
                continue
            stats["documents_out"] += 1
            stats["characters_out"] += len(doc["text"])
            shape_out.add(doc)
            yield doc

    write_jsonl(out_path, kept())
    stats["shape"] = {"in": shape_in.to_json(), "out": shape_out.to_json()}  # lmcore.data.stats
    if language:
        language.warn_unsuited(cfg, warn)
    chosen = stats["dropped"].get("language.keep", 0)  # the languages a config leaves out: its choice, not a rule's
    dropped = stats["documents_in"] - stats["documents_out"] - chosen
    if dropped > (stats["documents_in"] - chosen) / 2:
        reason, n = max(((r, n) for r, n in stats["dropped"].items() if r != "language.keep"), key=lambda i: i[1])
        warn(
            f"dropped {dropped:,} of {stats['documents_in']:,} documents, {n:,} of them for {reason}; if that rule "
            "does not suit this corpus, switch it off or loosen it under `clean:` in the config (see "
            "schemas/config.schema.yaml)"
        )
    return stats
