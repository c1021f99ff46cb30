"""Language identification on real text no one here wrote: the translated manual pages installed with the
system's packages (/usr/share/man/<language>/), against the language of their folder.

    python bench/language_id.py [--man /usr/share/man] [--model-file lid.176.bin] [--chars 2000]

Each page's troff source is stripped to its text (requests, comments and font escapes out), its first
--chars characters identified by lmcore.data.language.Identifier (py3langid, or a fastText model). Prints
per language the pages (those translated: see `untranslated`), the share identified right, the mean
score, and documents per second per core (CPU seconds of identification alone). English pages (man1-8)
are the English row.
"""

import argparse
import collections
import glob
import gzip
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lmcore.data.language import Identifier  # noqa: E402

FOLDER_LANGUAGE = {"pt_BR": "pt", "zh_CN": "zh", "zh_TW": "zh"}
# Many translated pages are translated in part: the folder says French, the options are in English. A page
# whose first --chars characters are 5% or more of these words is counted as untranslated, apart.
ENGLISH = set("the and of to is a in for that with this are be by on as or which from".split())


def untranslated(text):
    words = text.lower().split()
    return bool(words) and sum(w in ENGLISH for w in words) / len(words) >= 0.05


ESCAPES = re.compile(r"\\(f[BIRP]|f\(..|\(..|\*.|[-&|^e%~0 ])")


def page_text(path):
    """The words of a man page: no troff request or comment lines, no escapes."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = [line for line in f if not line.startswith((".", "'"))]
    return ESCAPES.sub(" ", " ".join(lines)).strip()


def pages(man, per_language):
    """{language: [text, ...]}: every translated folder, and English from man1-8."""
    found = collections.defaultdict(list)
    for folder in sorted(os.listdir(man)):
        if folder.startswith("man"):
            language, pattern = "en", os.path.join(man, folder, "*.gz")
        else:
            language, pattern = FOLDER_LANGUAGE.get(folder, folder), os.path.join(man, folder, "man*", "*.gz")
        for path in sorted(glob.glob(pattern)):
            if len(found[language]) < per_language:
                text = page_text(path)
                if len(text) > 200:
                    found[language].append(text)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--man", default="/usr/share/man")
    parser.add_argument("--model-file", default=None)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--per-language", type=int, default=200)
    args = parser.parse_args()
    identify = Identifier(args.model_file)
    rows, right, total, seconds = [], 0, 0, 0.0
    for language, texts in sorted(pages(args.man, args.per_language).items()):
        texts = [t[: args.chars] for t in texts]
        texts = texts if language == "en" else [t for t in texts if not untranslated(t)]
        if not texts:
            continue
        start = time.process_time()
        labels = [identify(t) for t in texts]
        seconds += time.process_time() - start
        ok = sum(1 for label, _ in labels if label == language)
        right, total = right + ok, total + len(texts)
        wrong = collections.Counter(label for label, _ in labels if label != language).most_common(1)
        mistaken = f"{wrong[0][0]} ({wrong[0][1]})" if wrong else ""
        rows.append((language, len(texts), ok / len(texts), sum(s for _, s in labels) / len(labels), mistaken))
    print(f"identifier: {args.model_file or 'py3langid'}; first {args.chars} characters of each translated page")
    print(f"{'language':>8} {'pages':>6} {'right':>7} {'mean score':>10}  most often taken for")
    for language, n, share, score, mistaken in rows:
        print(f"{language:>8} {n:>6} {share:>7.1%} {score:>10.3f}  {mistaken}")
    print(f"all: {total} pages, {right / total:.1%} right; {total / seconds:,.0f} documents per CPU-second")


if __name__ == "__main__":
    main()
