"""Data mixtures, per-source evaluation and continued training (init_from: {model: name})."""

import math

import numpy as np
import pytest

from helpers import documents, resumes_exactly, tiny_entry
from lmcore.data.splits import SPLITS
from lmcore.evaluation.perplexity import evaluate_model
from lmcore.io import read_json, write_jsonl
from lmcore.model.folder import load_model
from lmcore.tokens.shards import SplitTooSmall, TokenDataset, shard_part, write_manifest
from lmcore.train.config import TrainJob
from lmcore.train.loop import train


def two_sources(tmp_path, tok, sizes=(60, 20)):
    """Shards of two sources, `big` and `small`, one part each, and their manifest."""
    parts = []
    for name, n, seed in zip(("big", "small"), sizes, (0, 1)):
        write_jsonl(tmp_path / f"{name}.jsonl", [{**d, "id": f"{name}-{d['id']}"} for d in documents(n, seed=seed)])
        out = {s: str(tmp_path / f"{name}-{s}.npy") for s in SPLITS}
        stats = shard_part(tmp_path / f"{name}.jsonl", tok, {"validation": 0.2, "test": 0.2}, out)
        parts.append({"name": f"{name}/part-0", "source": name, "stats": stats, "shards": out})
    write_manifest(tmp_path / "manifest.json", tok, parts)
    return tmp_path / "manifest.json"


def share_of_windows_from(data, source, n=4000):
    streams, starts = data.draw(np.random.default_rng(0), n, 16)
    return np.mean([data.source_at(s, p) == source for s, p in zip(streams, starts)])


def test_windows_come_from_each_source_by_its_weight_or_else_by_its_tokens(tmp_path, bpe):
    manifest = two_sources(tmp_path, bpe)
    by_tokens = TokenDataset(manifest, "train", bpe.fingerprint)
    tokens = {s: by_tokens.by_source[s].total for s in ("big", "small")}
    assert share_of_windows_from(by_tokens, "small") == pytest.approx(tokens["small"] / sum(tokens.values()), abs=0.03)
    weighted = TokenDataset(manifest, "train", bpe.fingerprint, {"big": 1, "small": 3})
    assert share_of_windows_from(weighted, "small") == pytest.approx(0.75, abs=0.03)
    only = TokenDataset(manifest, "train", bpe.fingerprint, {"small": 1})
    assert only.sources == ["small"]
    x, _ = only.sample_batch(np.random.default_rng(0), 4, 16)
    assert x.shape == (4, 16)


def test_a_source_the_shards_lack_or_too_small_to_sample_is_named(tmp_path, bpe):
    manifest = two_sources(tmp_path, bpe, sizes=(60, 1))
    with pytest.raises(ValueError, match=r"no shards of source\(s\) \['wiki'\]; its sources are \['big', 'small'\]"):
        TokenDataset(manifest, "train", bpe.fingerprint, {"wiki": 1})
    small = TokenDataset(manifest, "validation", bpe.fingerprint, {"big": 1, "small": 1})
    with pytest.raises(SplitTooSmall, match=r"validation split .* this model \(source 'small'\) needs"):
        small.sample_batch(np.random.default_rng(0), 2, 16)


def test_the_manifest_check_names_the_source_a_model_cannot_sample(tmp_path, bpe):
    two_sources(tmp_path, bpe, sizes=(60, 1))
    parts = [
        {
            "name": f"{name}/part-0",
            "source": name,
            "stats": read_json(tmp_path / "manifest.json")["parts"][i]["stats"],
            "shards": {s: str(tmp_path / f"{name}-{s}.npy") for s in SPLITS},
        }
        for i, name in enumerate(("big", "small"))
    ]
    write_manifest(tmp_path / "ok.json", bpe, parts, {"m": (17, None)}, "tok")  # every source together: a window
    with pytest.raises(
        SplitTooSmall, match=r"tokenizer 'tok': the validation split .* model 'm' \(source 'small'\) needs"
    ):
        write_manifest(tmp_path / "no.json", bpe, parts, {"m": (17, {"small": 1})}, "tok")


def test_evaluation_scores_each_source_and_the_sources_add_up_to_the_whole(tmp_path, bpe, shards):
    manifest = two_sources(tmp_path, bpe)
    train(TrainJob(tiny_entry(max_steps=4), shards[0], manifest, tmp_path / "m", tmp_path / "ck"), log=lambda *a: None)
    model, tok = load_model(tmp_path / "m")
    result = evaluate_model(model, TokenDataset(manifest, "test", tok.fingerprint), tok.token_bytes())
    per = result["sources"]
    assert sorted(per) == ["big", "small"]
    assert (
        sum(s["tokens"] for s in per.values()) == result["tokens"]
        and sum(s["bytes"] for s in per.values()) == result["bytes"]
    )
    nats = sum(s["loss"] * s["tokens"] for s in per.values())
    assert result["loss"] == pytest.approx(nats / result["tokens"])
    assert result["bits_per_byte"] == pytest.approx(nats / (math.log(2) * result["bytes"]))


def entry(**changes):
    return tiny_entry(**{"max_steps": 6, "eval_interval": 3, **changes})


def test_a_continued_model_starts_at_its_parents_weights_with_its_own_data_and_schedule(tmp_path, bpe):
    manifest, tok = two_sources(tmp_path, bpe), bpe.path
    models = tmp_path / "models"
    parent = train(TrainJob(entry(), tok, manifest, models / "parent", tmp_path / "ck1"), log=lambda *a: None)
    lines = []
    child = train(
        TrainJob(
            entry(init_from={"model": "parent"}, lr=1e-3, max_steps=3),
            tok,
            manifest,
            models / "child",
            tmp_path / "ck2",
        ),
        log=lines.append,
    )
    assert any(line.startswith("starting from the weights of") and line.endswith("parent") for line in lines)
    assert child["initial_val_loss"] == pytest.approx(
        parent["best_val_loss"], rel=1e-5
    )  # same data, same fixed batches
    assert child["steps"] == 3
    milton = train(
        TrainJob(
            entry(init_from={"model": "parent"}, data={"sources": {"small": 1}}, max_steps=3),
            tok,
            manifest,
            models / "small",
            tmp_path / "ck3",
        ),
        log=lambda *a: None,
    )
    assert milton["initial_val_loss"] != pytest.approx(
        parent["best_val_loss"], rel=1e-5
    )  # the same weights, validated on its own source now


def test_a_parent_of_another_shape_or_tokenizer_fails_before_any_step(tmp_path, bpe):
    from helpers import train_tokenizer

    manifest = two_sources(tmp_path, bpe)
    models = tmp_path / "models"
    train(TrainJob(entry(), bpe.path, manifest, models / "parent", tmp_path / "ck1"), log=lambda *a: None)
    with pytest.raises(
        ValueError,
        match=r"init_from .*parent: tensor blocks.0.attn.proj.bias has shape \(32,\) there, "
        r"\(48,\) in this model entry",
    ):
        train(
            TrainJob(
                entry(d_model=48, init_from={"model": "parent"}), bpe.path, manifest, models / "wide", tmp_path / "ck2"
            ),
            log=lambda *a: None,
        )
    other = train_tokenizer(tmp_path / "other.model", model_type="unigram")
    (tmp_path / "o").mkdir()
    with pytest.raises(
        ValueError,
        match=r"init_from .*parent: trained with tokenizer \w{12}, this model with \w{12}; a model continues another",
    ):
        train(
            TrainJob(
                entry(init_from={"model": "parent"}),
                other.path,
                two_sources(tmp_path / "o", other),
                models / "other",
                tmp_path / "ck3",
            ),
            log=lambda *a: None,
        )


def test_a_flop_budget_sets_the_tokens_by_the_models_flops_per_token(tmp_path, bpe, shards):
    from lmcore.model.config import ModelConfig
    from lmcore.model.gpt import GPT, count_parameters, flops_per_token

    cfg = ModelConfig(vocab_size=bpe.vocab_size, d_model=32, n_layers=1, n_heads=2, context_length=32)
    fpt = flops_per_token(cfg, count_parameters(GPT(cfg))["non_embedding_parameters"])
    budget = 7.5 * 8 * 32 * fpt  # seven and a half steps of 8 x 32 tokens
    summary = train(
        TrainJob(entry(max_flops=budget, max_steps=1000, batch_size=8), *shards, tmp_path / "m", tmp_path / "ck"),
        log=lambda *a: None,
    )
    assert summary["steps"] == 8 and summary["flops_per_token"] == fpt


def test_a_mixture_run_resumed_from_a_checkpoint_ends_with_the_weights_of_one_never_interrupted(tmp_path, bpe):
    manifest = two_sources(tmp_path, bpe)
    cfg = entry(data={"sources": {"big": 1, "small": 2}}, checkpoint_interval=3, keep_checkpoints=5)
    resumes_exactly(cfg, bpe.path, manifest, tmp_path, resumed_at=3)  # killed between step 3 and step 6
