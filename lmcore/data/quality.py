"""Model-based filters: a quality classifier (DCLM, FineWeb-Edu), a perplexity filter (CCNet), a random sample.

A filtered source goes through four jobs after dedup:
  quality_classifier  fastText on a sample of `positive` against one of `negative` (DCLM: word bigrams),
                      10% of each sample held out for the accuracy the report shows;
  filter_scores       per part: one float per document and scorer, in the part's order (a .npy);
  filter_thresholds   per source: a histogram of every part's scores (BINS bins: bounded memory, the same
                      whatever the number of parts) turns `keep: {top: share}` and CCNet's thirds into bins;
  filter_apply        per part: the documents every scorer keeps, their scores in meta.
The score of `sample` is a uniform draw from the document's id, so that a random baseline of the same size as
a filter's output is a filter like the others.
"""

import heapq
import os
import tempfile

import numpy as np

from lmcore.data.splits import split_of
from lmcore.io import atomic_open, batches, read_json, read_jsonl, stable_hash, uniform, write_json, write_jsonl

SCORERS = ("quality", "perplexity", "sample")  # a part's score columns, in this order, those configured
BINS = 10_000
RANGES = {"quality": (0.0, 1.0), "perplexity": (0.0, 16.0), "sample": (0.0, 1.0)}  # bits per byte past 16: the last bin
SAMPLE_CHARS = 10_000  # a classifier's training document: its first characters (memory: sample x 2 x this)
HELD_OUT = 0.1
PLOT_BINS = 50  # the report's histogram: BINS summed in groups


def scorers(source):
    """The scorers a source's config entry switches on, in column order."""
    return [name for name in SCORERS if source.get(name) is not None]


def fasttext_line(text):
    """A document as fastText reads one: a single line (DCLM's preprocessing: lines joined by spaces)."""
    return " ".join(text.split())


# --- the classifier ------------------------------------------------------------------------------------


def draw_sample(paths, size, fractions, salt):
    """The `size` train-split documents of smallest hash(salt + id) among the files: a draw that does not
    depend on how the documents were parted, held in memory `size` documents at a time."""
    heap = []  # (-hash, id, text): the largest hash on top, popped when a smaller one arrives
    for path in paths:
        for doc in read_jsonl(path):
            if split_of(doc["id"], fractions) != "train":
                continue
            key = -stable_hash(salt + doc["id"])
            if len(heap) < size:
                heapq.heappush(heap, (key, doc["id"], doc["text"][:SAMPLE_CHARS]))
            elif key > heap[0][0]:
                heapq.heapreplace(heap, (key, doc["id"], doc["text"][:SAMPLE_CHARS]))
    return sorted((doc_id, text) for _, doc_id, text in heap)


def held_out(doc_id):
    return uniform("held-out:" + doc_id) < HELD_OUT


def train_classifier(positive, negative, model_path, cfg, label, log=print):
    """Train fastText on (id, text) samples of the two classes; write the model; return the held-out figures.
    One thread, so that the same samples give the same model (fastText's threads race, as Hogwild)."""
    import fasttext

    if len(positive) < 10 or len(negative) < 10:
        raise ValueError(
            f"quality classifier: {len(positive)} positive and {len(negative)} negative training documents; "
            "each class needs 10 at least (a source too small, or its train split empty)"
        )
    labelled = [(f"__label__{label}", d) for d in positive] + [("__label__other", d) for d in negative]
    train = [(lab, text) for lab, (doc_id, text) in labelled if not held_out(doc_id)]
    test = [(lab, text) for lab, (doc_id, text) in labelled if held_out(doc_id)]
    with tempfile.TemporaryDirectory(dir=os.path.dirname(model_path) or ".") as tmp:
        data = os.path.join(tmp, "train.txt")
        with open(data, "w", encoding="utf-8") as f:
            for i in np.random.default_rng(0).permutation(len(train)):  # fastText reads in order: classes mixed
                f.write(f"{train[i][0]} {fasttext_line(train[i][1])}\n")
        model = fasttext.train_supervised(
            input=data,
            wordNgrams=cfg["word_ngrams"],
            epoch=cfg["epochs"],
            lr=cfg["lr"],
            dim=cfg["dim"],
            bucket=cfg["buckets"],
            thread=1,
            seed=0,
            verbose=0,
        )
        tmp_model = os.path.join(tmp, "classifier.bin")
        model.save_model(tmp_model)
        os.replace(tmp_model, model_path)
    scores = Classifier(model_path, label).scores([text for _, text in test])
    truth = np.array([lab == f"__label__{label}" for lab, _ in test])
    said = scores >= 0.5
    figures = {
        "train_documents": {
            "positive": sum(1 for lab, _ in train if "other" not in lab),
            "negative": sum(1 for lab, _ in train if "other" in lab),
        },
        "held_out_documents": {"positive": int(truth.sum()), "negative": int((~truth).sum())},
        "held_out_accuracy": float((said == truth).mean()) if len(test) else None,
        "held_out_recall": {
            "positive": float(said[truth].mean()) if truth.any() else None,
            "negative": float((~said[~truth]).mean()) if (~truth).any() else None,
        },
    }
    log(f"quality classifier: {figures}")
    return figures


class Classifier:
    """A fastText classifier's probability of the positive label, per document."""

    def __init__(self, path, label):
        import fasttext

        self.model = fasttext.load_model(path)
        self.label = f"__label__{label}"
        if self.label not in self.model.labels:
            raise ValueError(
                f"{path}: the classifier's labels are {[lab.removeprefix('__label__') for lab in self.model.labels]}; "
                f"quality.label {label!r} is none of them"
            )

    def scores(self, texts):
        labels, probs = self.model.predict([fasttext_line(t) for t in texts], k=-1)
        return np.array([dict(zip(ls, ps)).get(self.label, 0.0) for ls, ps in zip(labels, probs)], dtype=np.float32)


# --- thresholds and the filter -------------------------------------------------------------------------


def sample_scores(ids):
    """The random baseline's score: a uniform draw in [0, 1) from each id."""
    return np.array([uniform("sample:" + i) for i in ids], dtype=np.float64)


def bins(scores, name):
    """Each score's histogram bin; NaN (nothing to score) goes to the worst end."""
    lo, hi = RANGES[name]
    worst = lo if name == "quality" else hi
    x = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=worst)
    return np.clip(((x - lo) / (hi - lo) * BINS).astype(np.int64), 0, BINS - 1)


def histograms(score_paths, names, chunk=1 << 20):
    """{scorer: counts per bin} over every part's scores, read a chunk at a time."""
    counts = {name: np.zeros(BINS, dtype=np.int64) for name in names}
    for path in score_paths:
        scores = np.load(path, mmap_mode="r")
        for start in range(0, len(scores), chunk):
            block = np.asarray(scores[start : start + chunk])
            for j, name in enumerate(names):
                counts[name] += np.bincount(bins(block[:, j], name), minlength=BINS)
    return counts


def first_bin_reaching(counts, share):
    """The bin at which the cumulative count first reaches `share` of the total."""
    return int(np.searchsorted(np.cumsum(counts), share * counts.sum()))


def threshold(counts, name, keep, cuts):
    """The rule `keep` becomes for one scorer: {"bins": [[first, last], ...]} kept, or a raw comparison; `cuts`
    are CCNet's thirds of the same counts (cut_bins)."""
    if "min_score" in keep or "max_bits_per_byte" in keep:
        return dict(keep)
    if "top" in keep:  # the best share: the highest scores of a classifier, the lowest bits per byte
        if name == "quality":
            return {"bins": [[BINS - 1 - first_bin_reaching(counts[::-1], keep["top"]), BINS - 1]]}
        return {"bins": [[0, first_bin_reaching(counts, keep["top"])]]}
    spans = {"head": [0, cuts[0]], "middle": [cuts[0] + 1, cuts[1]], "tail": [cuts[1] + 1, BINS - 1]}
    return {"bins": [spans[b] for b in keep["buckets"]]}


def cut_bins(counts):
    """CCNet's thirds: the last bin of the head and of the middle."""
    return [first_bin_reaching(counts, 1 / 3), first_bin_reaching(counts, 2 / 3)]


def source_thresholds(source, score_paths):
    """thresholds.json of a filtered source: each scorer's rule, its histogram for the report, its bucket cuts."""
    names = scorers(source)
    counts = histograms(score_paths, [n for n in names if n != "sample"])
    out = {"scorers": names, "documents": int(sum(len(np.load(p, mmap_mode="r")) for p in score_paths))}
    for name in names:
        if name == "sample":
            out[name] = {"keep": {"below": source["sample"]}}
            continue
        cuts = cut_bins(counts[name])
        out[name] = {
            "keep": threshold(counts[name], name, source[name]["keep"], cuts),
            "cuts": cuts,
            "histogram": plot_histogram(counts[name], name),
        }
    return out


def plot_histogram(counts, name):
    """The report's histogram of one scorer: PLOT_BINS bins over [0, 1] for a classifier's scores, over the range
    the documents fill for bits per byte; `scale` is the range of the thresholds' bins."""
    lo, hi = RANGES[name]
    filled = np.flatnonzero(counts)
    first, last = (0, BINS - 1) if name == "quality" or not len(filled) else (filled[0], filled[-1])
    width = -(-(last - first + 1) // PLOT_BINS)  # fine bins per plotted bin, rounded up
    groups = [int(counts[at : at + width].sum()) for at in range(first, last + 1, width)]
    edge = lambda b: lo + (hi - lo) * b / BINS  # noqa: E731
    return {"range": [edge(first), edge(first + width * len(groups))], "counts": groups, "scale": [lo, hi]}


def kept(name, scores, rule):
    """Which of one scorer's scores its rule keeps."""
    if name == "sample":
        return scores < rule["below"]
    if "min_score" in rule:
        return scores >= rule["min_score"]
    if "max_bits_per_byte" in rule:
        return np.nan_to_num(scores, nan=np.inf) <= rule["max_bits_per_byte"]
    b = bins(scores, name)
    return np.logical_or.reduce([(b >= first) & (b <= last) for first, last in rule["bins"]])


BUCKETS = ("head", "middle", "tail")
META = {"quality": "quality_score", "perplexity": "bits_per_byte"}


def apply_filter(docs_path, scores_path, thresholds_path, out_path):
    """Write the documents of one part that every scorer keeps, each with its scores in meta; the counts."""
    plan = read_json(thresholds_path)
    names = plan["scorers"]
    scores = np.load(scores_path)
    keep = {n: kept(n, scores[:, j], plan[n]["keep"]) for j, n in enumerate(names)}
    buckets = (
        np.searchsorted(plan["perplexity"]["cuts"], bins(scores[:, names.index("perplexity")], "perplexity"))
        if "perplexity" in names
        else None
    )
    stats = {"documents": 0, "kept": 0, "chars": 0, "kept_chars": 0, "dropped": {n: 0 for n in names}}

    def documents():
        for i, doc in enumerate(read_jsonl(docs_path)):
            if i >= len(scores):
                raise ValueError(f"{docs_path}: more documents than {scores_path} has scores; score the part again")
            stats["documents"] += 1
            stats["chars"] += len(doc["text"])
            failed = next((n for n in names if not keep[n][i]), None)
            if failed:
                stats["dropped"][failed] += 1
                continue
            meta = dict(doc.get("meta") or {})
            for j, n in enumerate(names):
                if n in META:
                    meta[META[n]] = round(float(scores[i, j]), 5)
            if buckets is not None:
                meta["perplexity_bucket"] = BUCKETS[buckets[i]]
            stats["kept"] += 1
            stats["kept_chars"] += len(doc["text"])
            yield {**doc, "meta": meta}
        if stats["documents"] != len(scores):  # inside the atomic write: no output from a mismatch
            raise ValueError(f"{docs_path}: {stats['documents']} documents for {len(scores)} scores in {scores_path}")

    write_jsonl(out_path, documents())
    return stats


def score_part(docs_path, source, out_path, classifier=None, reference=None, batch=256, log=print):
    """One float per document and scorer (SCORERS' order) of one part, as a .npy of shape (documents, scorers).
    `classifier` is a fastText file, `reference` a model folder: what the source's quality and perplexity use."""
    names = scorers(source)
    score = {}
    if "quality" in names:
        score["quality"] = Classifier(classifier, source["quality"]["label"]).scores
    if "perplexity" in names:
        from lmcore.evaluation.perplexity import DocumentScorer

        score["perplexity"] = DocumentScorer(reference, source["perplexity"]["max_tokens"])
    columns = []
    for docs in batches(read_jsonl(docs_path), batch):
        ids, texts = [d["id"] for d in docs], [d["text"] for d in docs]
        columns.append(np.stack([sample_scores(ids) if n == "sample" else score[n](texts) for n in names], axis=1))
    scores = np.concatenate(columns) if columns else np.zeros((0, len(names)))
    with atomic_open(out_path, "wb") as f:
        np.save(f, scores.astype(np.float32))
    log(f"{len(scores)} documents scored by {names}")
    return scores


def write_thresholds(path, source, score_paths):
    plan = source_thresholds(source, score_paths)
    write_json(path, plan)
    return plan
