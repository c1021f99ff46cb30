"""Model-based filters (lmcore.data.quality): the classifier, the reference model's bits per byte, thresholds
from histograms, the filter's output, the config's checks, and the workflow end to end on planted text."""

import json
import random

import numpy as np
import pytest
import torch

from helpers import SCHEMA, fake_document, planned_jobs, snakemake, trained_folder, write_config
from lmcore.config import ConfigError, prepare_config
from lmcore.data.quality import (
    BINS,
    apply_filter,
    draw_sample,
    score_part,
    source_thresholds,
    train_classifier,
    write_thresholds,
)
from lmcore.evaluation.perplexity import DocumentScorer
from lmcore.io import read_jsonl, write_jsonl

JUNK = (
    "click here subscribe newsletter free shipping offer privacy policy terms service cookies account login "
    "password update download app best price deal sale discount order now limited time customer support contact "
    "email online shop cart checkout product review rating the and to of with for your our"
).split()


def junk_document(rng, n_lines):
    """Web boilerplate that passes Gopher's rules (stop words, few symbols): only a model tells it from verse."""
    return "\n".join(
        " ".join(rng.choice(JUNK) for _ in range(rng.randint(6, 14))).capitalize() + "." for _ in range(n_lines)
    )


def part(path, docs):
    write_jsonl(path, docs)
    return str(path)


SPLITS = {"validation": 0.1, "test": 0.1}
CLASSIFIER = {"word_ngrams": 2, "epochs": 20, "lr": 0.5, "dim": 16, "buckets": 100_000}


def test_the_classifier_separates_two_planted_kinds_of_text_on_held_out_documents(tmp_path):
    rng = random.Random(0)
    verse = [{"id": f"v{i}", "text": fake_document(rng, 30)} for i in range(300)]
    junk = [{"id": f"j{i}", "text": junk_document(rng, 30)} for i in range(300)]
    positive = draw_sample(
        [part(tmp_path / "v0.jsonl", verse[:150]), part(tmp_path / "v1.jsonl", verse[150:])], 1000, SPLITS, "s:"
    )
    negative = draw_sample([part(tmp_path / "j.jsonl", junk)], 1000, SPLITS, "s:")
    figures = train_classifier(
        positive, negative, str(tmp_path / "classifier.bin"), CLASSIFIER, "hq", log=lambda *a: None
    )
    assert figures["held_out_documents"]["positive"] >= 10 and figures["held_out_documents"]["negative"] >= 10
    assert figures["held_out_accuracy"] >= 0.95, figures


def test_a_classifier_the_user_has_scores_by_its_label(tmp_path):
    rng = random.Random(2)
    verse = [(f"v{i}", fake_document(rng, 20)) for i in range(60)]
    junk = [(f"j{i}", junk_document(rng, 20)) for i in range(60)]
    model_file = str(tmp_path / "theirs.bin")
    train_classifier(verse, junk, model_file, CLASSIFIER, "good", log=lambda *a: None)
    docs = part(
        tmp_path / "part.jsonl",
        [{"id": "a", "text": fake_document(rng, 20)}, {"id": "b", "text": junk_document(rng, 20)}],
    )
    config = filtered_config(quality={"model_file": model_file, "label": "good", "keep": {"min_score": 0.5}})
    source = prepare_config(config, SCHEMA)["sources"]["pool"]
    scores = score_part(docs, source, tmp_path / "scores.npy", classifier=model_file, log=lambda *a: None)
    assert scores[0, 0] > 0.9 > 0.1 > scores[1, 0]
    with pytest.raises(
        ValueError, match=r"theirs.bin: the classifier's labels are \['good', 'other'\]; quality.label 'hq'"
    ):
        score_part(
            docs, {**source, "quality": {**source["quality"], "label": "hq"}}, tmp_path / "s.npy", classifier=model_file
        )
    with pytest.raises(ConfigError, match=r"quality\.model_file': no file 'nope.bin'"):
        prepare_config(filtered_config(quality={"model_file": "nope.bin"}), SCHEMA)


def test_the_training_sample_is_the_same_whatever_the_parts_and_bounded(tmp_path):
    docs = [{"id": f"d{i}", "text": f"text {i}"} for i in range(200)]
    one = draw_sample([part(tmp_path / "a.jsonl", docs)], 50, SPLITS, "s:")
    three = draw_sample([part(tmp_path / f"b{k}.jsonl", docs[k::3]) for k in range(3)], 50, SPLITS, "s:")
    assert one == three and len(one) == 50


def test_a_classifier_too_small_to_train_says_so(tmp_path):
    with pytest.raises(ValueError, match="each class needs 10"):
        train_classifier([("a", "x")] * 3, [("b", "y")] * 30, str(tmp_path / "c.bin"), CLASSIFIER, "hq")


def scores_file(path, values):
    np.save(path, np.asarray(values, dtype=np.float32).reshape(-1, 1))
    return str(path)


def test_top_share_and_thirds_come_from_every_parts_histogram_the_same_whatever_the_parts(tmp_path):
    scores = np.random.default_rng(0).uniform(1.0, 3.0, size=3000)
    source = {"perplexity": {"keep": {"top": 0.2}}}
    one = source_thresholds(source, [scores_file(tmp_path / "one.npy", scores)])
    three = source_thresholds(source, [scores_file(tmp_path / f"p{k}.npy", scores[k::3]) for k in range(3)])
    assert one == three
    ((first, last),) = one["perplexity"]["keep"]["bins"]
    upper = 16.0 * (last + 1) / BINS  # the kept range's upper edge, in bits per byte
    assert first == 0 and 0.2 <= (scores < upper).mean() <= 0.2 + 3 / 3000 + 16 / BINS
    quality = source_thresholds({"quality": {"keep": {"top": 0.25}}}, [scores_file(tmp_path / "q.npy", scores / 3)])
    ((first, last),) = quality["quality"]["keep"]["bins"]
    assert last == BINS - 1 and abs((scores / 3 >= first / BINS).mean() - 0.25) < 0.01


def test_the_filter_keeps_what_every_scorer_keeps_with_scores_in_meta(tmp_path):
    docs = [{"id": f"d{i}", "text": "x" * (i + 1), "meta": {"source": "s"}} for i in range(90)]
    bpb = np.linspace(1.0, 2.0, 90)
    docs_path = part(tmp_path / "part-0.jsonl", docs)
    scores = scores_file(tmp_path / "scores.npy", bpb)
    source = {"perplexity": {"keep": {"buckets": ["head"]}}}
    write_thresholds(tmp_path / "t.json", source, [scores])
    stats = apply_filter(docs_path, scores, tmp_path / "t.json", tmp_path / "out.jsonl")
    kept = list(read_jsonl(tmp_path / "out.jsonl"))
    assert stats["kept"] == len(kept) and 29 <= len(kept) <= 31 and stats["dropped"]["perplexity"] == 90 - len(kept)
    assert [d["id"] for d in kept] == [f"d{i}" for i in range(len(kept))]  # the lowest bits per byte
    assert kept[0]["meta"] == {"source": "s", "bits_per_byte": 1.0, "perplexity_bucket": "head"}


def test_scores_that_do_not_match_their_part_are_an_error_and_leave_no_output(tmp_path):
    docs_path = part(tmp_path / "part-0.jsonl", [{"id": f"d{i}", "text": "x"} for i in range(5)])
    scores = scores_file(tmp_path / "scores.npy", [1.0] * 4)
    write_thresholds(tmp_path / "t.json", {"perplexity": {"keep": {"max_bits_per_byte": 2.0}}}, [scores])
    with pytest.raises(ValueError, match="more documents than"):
        apply_filter(docs_path, scores, tmp_path / "t.json", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_packed_document_scores_equal_each_document_scored_alone(tmp_path, bpe):
    folder = trained_folder(tmp_path, bpe, {"position": "rope", "norm": "rmsnorm"})
    rng = random.Random(3)
    texts = [fake_document(rng, rng.randint(1, 12)) for _ in range(9)] + [""]
    scorer = DocumentScorer(folder, max_tokens=60)
    packed = scorer(texts)
    alone = np.array([scorer([t])[0] for t in texts])
    np.testing.assert_allclose(packed[:-1], alone[:-1], rtol=1e-5)
    assert np.isnan(packed[-1])  # nothing to score
    # By hand for one document: its tokens after an end-of-text, in windows of the context, nats over bytes
    ids = [scorer.tok.eot_id] + list(scorer.tok.encode(texts[0]))[:60]
    nats, n_bytes = 0.0, 0
    for start in range(0, len(ids) - 1, scorer.context):
        chunk = torch.tensor(ids[start : start + scorer.context + 1])
        logits = scorer.model(chunk[None, :-1])[0][0]
        nats += torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="sum").item()
        n_bytes += int(scorer.token_bytes[chunk[1:].numpy()].sum())
    assert packed[0] == pytest.approx(nats / (np.log(2) * n_bytes), rel=1e-5)


def filtered_config(**pool):
    return {
        "sources": {
            "good": {"path": "data/good"},
            "pool": {"path": "data/pool", "parts": 2, **pool},
        },
        "clean": {"min_chars": 100, "min_words": 20},
        "splits": {"validation": 0.1, "test": 0.1},
        "tokenizers": {"tok": {"vocab_size": 320}, "reftok": {"vocab_size": 320, "sources": ["good"]}},
        "model_defaults": {
            "tokenizer": "tok", "context_length": 32, "batch_size": 8, "max_steps": 60, "warmup_steps": 5,
            "lr": 0.01, "eval_interval": 20, "eval_batches": 2, "log_interval": 5, "checkpoint_interval": 20,
            "d_model": 32, "n_layers": 1, "n_heads": 2,
        },
        "models": {"ref": {"tokenizer": "reftok", "max_steps": 150}, "m": {"data": {"sources": {"pool": 1}}}},
    }  # fmt: skip


@pytest.mark.parametrize(
    "change, message",
    [
        ({"quality": {"positive": "nope"}}, r"sources\.pool\.quality\.positive': no source 'nope'"),
        ({"quality": {"positive": "pool"}}, r"quality\.positive': 'pool' is also the negative"),
        ({"quality": {"positive": "good", "model_file": "x.bin"}}, r"sources\.pool\.quality': give `positive`"),
        ({"quality": {"positive": "good", "keep": {"buckets": ["head"]}}}, r"quality\.keep': buckets does not suit"),
        ({"perplexity": {"model": "nope"}}, r"perplexity\.model': 'nope' is not a model"),
        ({"perplexity": {"model": "m"}}, r"source pool -> model m -> tokenizer tok -> source pool is a cycle"),
        ({"sample": 0}, r"sources\.pool\.sample"),
    ],
)
def test_a_bad_filter_is_a_config_error_naming_it(change, message):
    with pytest.raises(ConfigError, match=message):
        prepare_config(filtered_config(**change), SCHEMA)


def test_a_model_reads_only_its_tokenizers_sources():
    config = filtered_config()
    config["models"]["ref"]["data"] = {"sources": {"pool": 1}}
    with pytest.raises(
        ConfigError, match=r"models\.ref\.data\.sources': 'pool' is not among the sources of its tokenizer"
    ):
        prepare_config(config, SCHEMA)
    config["tokenizers"]["reftok"]["sources"] = ["nope"]
    with pytest.raises(ConfigError, match=r"tokenizers\.reftok\.sources': no source 'nope'"):
        prepare_config(config, SCHEMA)


def test_filters_keep_the_planted_good_text_end_to_end(tmp_path):
    rng = random.Random(1)
    for folder in ("good", "pool"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    for i in range(80):
        (tmp_path / "data/good" / f"g{i:03d}.txt").write_text(fake_document(rng, rng.randint(30, 60)))
    for i in range(50):
        (tmp_path / "data/pool" / f"verse{i:03d}.txt").write_text(fake_document(rng, rng.randint(30, 60)))
        (tmp_path / "data/pool" / f"junk{i:03d}.txt").write_text(junk_document(rng, rng.randint(30, 60)))
    config = filtered_config(
        quality={"positive": "good", "keep": {"top": 0.5}, "epochs": 20, "buckets": 100_000},
        perplexity={"model": "ref", "keep": {"top": 0.5}},
    )
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake(tmp_path, "results/report.html", configfile=configfile)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    kept = [d for k in range(2) for d in read_jsonl(tmp_path / f"results/filter/pool/part-{k}.jsonl")]
    verse = [d for d in kept if "verse" in d["id"]]
    assert len(verse) >= 0.9 * len(kept) and len(kept) >= 40  # the classifier and the reference agree: verse
    assert all(0 <= d["meta"]["quality_score"] <= 1 and d["meta"]["bits_per_byte"] > 0 for d in kept)
    stats = [json.loads((tmp_path / f"results/filter/pool/part-{k}.stats.json").read_text()) for k in range(2)]
    assert sum(s["documents"] for s in stats) == 100 and sum(s["dropped"]["quality"] for s in stats) >= 45
    for k in range(2):  # the reference model alone: the planted verse has the lowest bits per byte
        ids = [d["id"] for d in read_jsonl(tmp_path / f"results/dedup/pool/part-{k}.jsonl")]
        bpb = np.load(tmp_path / f"results/filter/pool/scores/part-{k}.npy")[:, 1]  # columns: quality, perplexity
        lowest = [ids[i] for i in np.argsort(bpb)[: len(ids) // 2]]
        assert sum("verse" in i for i in lowest) >= 0.9 * len(lowest)
    tokens = json.loads((tmp_path / "results/shards/reftok/manifest.json").read_text())
    assert {p["source"] for p in tokens["parts"]} == {"good"}  # the reference's tokenizer never waits for pool
    html = (tmp_path / "results/report.html").read_text()
    assert "Model-based filters" in html and "after the model-based filters" in html
    # A new threshold reruns the filter's last two steps and what reads the pool, not the classifier nor the scores
    config["sources"]["pool"]["quality"]["keep"] = {"top": 0.4}
    write_config(configfile, config)
    jobs = planned_jobs(snakemake(tmp_path, "-n", "results/report.html", configfile=configfile))
    assert "quality_classifier" not in jobs and "filter_scores" not in jobs and jobs["filter_thresholds"] == 1
