"""Normalise documents and drop the ones that fail the configured filters, with a named reason."""
import re
import unicodedata

from lmcore.io import read_jsonl, write_jsonl

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
EXAMPLES_PER_REASON = 5
EXCERPT_CHARS = 200


def normalize(text):
    """NFC, LF line endings, control characters removed (tab and newline kept), trailing spaces stripped."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return TRAILING_SPACE.sub("", CONTROL.sub("", text))


def drop_reason(text, cfg):
    """The name of the first filter the text fails, or None to keep it."""
    if len(text) < cfg["min_chars"]:
        return "too_short_chars"
    if len(text.split()) < cfg["min_words"]:
        return "too_short_words"
    return None


def clean_part(in_path, out_path, cfg):
    """Clean one part; return statistics: documents and characters in and out, drops per reason, and up to 5 examples (id and excerpt) per reason."""
    stats = {"documents_in": 0, "characters_in": 0, "documents_out": 0, "characters_out": 0, "dropped": {}, "examples": {}}

    def kept():
        for doc in read_jsonl(in_path):
            stats["documents_in"] += 1
            stats["characters_in"] += len(doc["text"])
            doc["text"] = normalize(doc["text"])
            reason = drop_reason(doc["text"], cfg)
            if reason:
                stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1
                examples = stats["examples"].setdefault(reason, [])
                if len(examples) < EXAMPLES_PER_REASON:
                    examples.append({"id": doc["id"], "excerpt": doc["text"][:EXCERPT_CHARS]})
                continue
            stats["documents_out"] += 1
            stats["characters_out"] += len(doc["text"])
            yield doc

    write_jsonl(out_path, kept())
    return stats
