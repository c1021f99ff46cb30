"""train / validation / test, assigned per document by a stable hash of its id (after dedup)."""

from lmcore.io import read_jsonl, uniform

SPLITS = ("train", "validation", "test")


def split_of(doc_id, fractions):
    """The split of one document: a uniform draw u in [0, 1) from its id decides it."""
    u = uniform(fractions.get("salt", "") + doc_id)
    if u < fractions["test"]:
        return "test"
    if u < fractions["test"] + fractions["validation"]:
        return "validation"
    return "train"


def documents_in_split(paths, split, fractions):
    """Yield the documents of the given JSONL files that fall in `split`."""
    for path in paths:
        for doc in read_jsonl(path):
            if split_of(doc["id"], fractions) == split:
                yield doc
