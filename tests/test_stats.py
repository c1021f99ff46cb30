"""Corpus statistics (lmcore.data.stats): length distributions that merge across parts, top domains, and
the report's plots of them."""

from lmcore.data.stats import Shape, median_bin, merge_shapes, source_stats


def shape_of(docs):
    shape = Shape()
    for doc in docs:
        shape.add(doc)
    return shape.to_json()


DOCS = [{"text": "word " * n, "meta": {"url": f"https://www.site{n % 3}.example/p"}} for n in range(1, 200)]


def test_histograms_count_documents_per_power_of_two_and_merge_as_one():
    whole = shape_of(DOCS)
    assert sum(whole["chars"]) == len(DOCS) and whole["chars"][3] == 1  # "word " is 5 characters: [4, 8)
    assert whole["words"][bin_k(100)] == sum(1 for n in range(1, 200) if 64 <= n < 128)
    assert merge_shapes([shape_of(DOCS[:50]), None, shape_of(DOCS[50:])]) == whole
    assert whole["domains"] == {"site0.example": 66, "site1.example": 67, "site2.example": 66}
    assert median_bin(whole["words"]) == (64, 128)


def bin_k(value):
    return value.bit_length()


def test_a_sources_stats_add_its_parts():
    parts = [
        {"documents_in": 3, "characters_in": 30, "documents_out": 2, "characters_out": 20, "dropped": {"min_chars": 1},
         "languages": {"en": [3, 30]}, "shape": {"in": shape_of(DOCS[:3]), "out": shape_of(DOCS[:2])}},
        {"documents_in": 1, "characters_in": 9, "documents_out": 1, "characters_out": 9, "dropped": {},
         "languages": {"en": [1, 9]}, "shape": {"in": shape_of(DOCS[3:4]), "out": shape_of(DOCS[3:4])}},
    ]  # fmt: skip
    stats = source_stats("s", parts)
    assert stats["documents_in"] == 4 and stats["dropped"] == {"min_chars": 1} and stats["languages"] == {"en": [4, 39]}
    assert sum(stats["shape"]["in"]["chars"]) == 4 and sum(stats["shape"]["out"]["chars"]) == 3


def test_the_report_plots_each_sources_lengths_and_counts_duplicates_per_cluster_size():
    from lmcore.report import render
    from test_report import model, page_data

    data, tokenizers = page_data()
    data["corpus"] = [{"source": "web", "shape": {"in": shape_of(DOCS), "out": shape_of(DOCS[10:])}}]
    counts = [0, 0, 0, 4, 9, 2] + [0] * 34
    data["manifests"] = {"bpe": {"parts": [{"source": "web", "stats": {"train": {"tokens_per_document": counts}}}]}}
    html = render({"config": {}, "commit": "abc", "rule_times": {}}, data, tokenizers, {"m": model(3.0)})
    section = html[html.index("<h3>Corpus statistics</h3>") : html.index("<h2>Tokenizers</h2>")]
    assert section.count("<svg") == 3 and "web: chars per document" in section and "site1.example" in section
    assert "web: bpe tokens per document" in section
    assert "<td class='n'>2</td><td class='n'>1</td>" in section  # the page data's cluster of 2: one removed


def test_shards_count_tokens_per_document_in_the_same_bins(tmp_path, bpe):
    from helpers import documents, make_shards

    stats, _ = make_shards(tmp_path, bpe, documents(30, seed=2))
    for split in stats.values():
        assert sum(split["tokens_per_document"]) == split["documents"]
        assert sum(n * 2**k for k, n in enumerate(split["tokens_per_document"])) >= split["tokens"] - split["documents"]
