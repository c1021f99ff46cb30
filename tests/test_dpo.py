"""Preference tuning (`dpo: {beta, reference}`): preference records and a play's pairs as sources, pairs in the
shards, the loss and TRL's metrics, the reference scored once and exactly, a DPO run that resumes exactly and
raises the held-out preference for the chosen answers, and the config errors that stop what could not work."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_conversations import PLAY, write_lines

from helpers import CHAT_WORDS, SCHEMA, make_shards, resumes_exactly, tiny_config, tiny_entry, trained_folder
from lmcore.config import ConfigError, prepare_config
from lmcore.evaluation.perplexity import evaluate_folder
from lmcore.model.folder import load_model, save_model
from lmcore.tokens.chat import IGNORE, chat_ids, render
from lmcore.train.dpo import DPO, PreferencePairs, pair_logps
from test_ingest import run_ingest

quiet = lambda *a: None  # noqa: E731


def test_preference_records_in_both_forms_with_bad_pairs_counted(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    ask = [{"role": "user", "content": "Who?"}]
    write_lines(files / "pairs.jsonl", [
        {"q": "Who?", "good": "Me.", "bad": "You."},
        {"q": "Why?", "good": "Because.", "bad": "Because."},  # the same answer: no preference
    ])  # fmt: skip
    docs, stats = run_ingest("p", tmp_path / "raw", {"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert [(d["messages"], d["rejected"]) for d in docs] == [(ask + [{"role": "assistant", "content": "Me."}], "You.")]
    assert stats["dropped"] == {"not a preference pair: rejected answer equals the chosen": 1}
    (files / "pairs.jsonl").unlink()
    write_lines(files / "chats.jsonl", [
        {"c": ask + [{"role": "assistant", "content": "Me."}], "r": ask + [{"role": "assistant", "content": "No."}]},
        {"c": ask + [{"role": "assistant", "content": "Me."}], "r": [{"role": "user", "content": "What?"},
                                                                     {"role": "assistant", "content": "No."}]},
    ])  # fmt: skip
    docs, stats = run_ingest("p", tmp_path / "raw", {"chosen": "c", "rejected": "r"})
    assert [d["rejected"] for d in docs] == ["No."]
    assert stats["dropped"] == {"not a preference pair: conversations that differ before their last message": 1}


def test_a_plays_pairs_reject_with_a_reply_from_another_scene(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    (files / "macbeth.txt").write_text(PLAY)
    pattern = r"^([A-Z][A-Z' -]*[A-Z])\.$"
    plain, _ = run_ingest("play", tmp_path / "raw", {"dialogue": pattern})
    docs, _ = run_ingest("play", tmp_path / "raw", {"dialogue": pattern, "rejected": "other_scene"})
    assert sorted(str(d["messages"]) for d in docs) == sorted(str(d["messages"]) for d in plain)  # the same, paired
    replies = {d["messages"][-1]["content"]: d for d in plain}
    for d in docs:  # each rejected reply is a reply of the play from another scene
        other = replies[d["rejected"]]
        assert d["rejected"] != d["messages"][-1]["content"] and other["messages"][0] != d["messages"][0]


def preference_docs(n, seed=0):
    """n one-turn pairs: the chosen answer repeats the question's words, the rejected one is other words."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words = [rng.choice(CHAT_WORDS[:8]) for _ in range(rng.randint(2, 6))]
        messages = [{"role": "user", "content": " ".join(words)}, {"role": "assistant", "content": " ".join(words)}]
        docs.append({"id": f"p{i}", "text": "", "messages": messages,
                     "rejected": " ".join(rng.choice(CHAT_WORDS[8:]) for _ in words)})  # fmt: skip
    return docs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, bpe):
    folder = tmp_path_factory.mktemp("pairs")
    make_shards(folder, bpe, preference_docs(150))
    return folder / "manifest.json"


def test_a_pair_is_its_chosen_and_its_rejected_conversation_and_scores_the_last_answer_only(pairs, bpe):
    docs = preference_docs(150)
    test = np.load(pairs.parent / "test.npy")
    data = PreferencePairs(pairs, "test", bpe.fingerprint, None, chat_ids(bpe))
    starts = data.pair_starts(data.streams[0])
    stats = [p["stats"]["test"] for p in json.loads(pairs.read_text())["parts"]][0]
    assert len(starts) == stats["pairs"] and stats["conversations"] == 0
    first = next(d for d in docs if render(bpe, d["messages"])[0].tolist() == test[: starts[0, 1] - 1].tolist())
    rejected = first["messages"][:-1] + [{"role": "assistant", "content": first["rejected"]}]
    assert test[starts[0, 1] : starts[0, 2] - 1].tolist() == render(bpe, rejected)[0].tolist()
    x, y = data.rows([(0, 0)], 64)
    _, mask = render(bpe, first["messages"])
    assert (y[0] != IGNORE).sum() == mask.sum() and (y[0][: len(mask) - 1][~mask[1:]] == IGNORE).all()


def test_the_loss_and_metrics_are_trls_and_the_reference_is_scored_exactly(pairs, bpe):
    folder = trained_folder(pairs.parent / "m", bpe, {"context_length": 64})
    model, _ = load_model(folder)
    data = PreferencePairs(pairs, "train", bpe.fingerprint, None, chat_ids(bpe))
    data.reference, _ = pair_logps(model, data, 64, "cpu")
    x, y, ref = (torch.from_numpy(a) for a in data.sample_batch(np.random.default_rng(0), 4, 64))
    objective = DPO(model, beta=0.1)
    _, loss = objective(x, y, ref)
    assert loss.item() == pytest.approx(np.log(2), abs=1e-5)  # the policy is the reference: every margin 0
    logits = model(x)[0]
    logps = (F.log_softmax(logits, -1).gather(2, y.clamp(min=0)[..., None])[..., 0] * (y != IGNORE)).sum(1)
    torch.testing.assert_close(ref, torch.stack([logps[:4], logps[4:]], 1).detach(), rtol=1e-5, atol=1e-4)
    shifted = ref.clone()
    shifted[:, 1] += 2.0  # the reference liked the rejected answers more: the policy's chosen look better
    _, loss = objective(x, y, shifted)
    assert loss.item() == pytest.approx(-F.logsigmoid(torch.tensor(0.2)).item(), abs=1e-5)
    m = objective.metrics()
    assert m["rewards/margins"] == pytest.approx(0.1, abs=1e-5)  # the mean over both calls: 0 and 0.2
    assert m["rewards/accuracies"] == pytest.approx(0.5) and objective.metrics() == {}


def dpo_entry(**changes):
    return tiny_entry(dpo={"beta": 0.1, "reference": {"model": "sft"}}, context_length=64, batch_size=4,
                      max_steps=12, eval_interval=4, checkpoint_interval=6, keep_checkpoints=3, lr=0.01,
                      init_from={"model": "sft"}, **changes)  # fmt: skip


def test_dpo_resumes_exactly_logs_trls_metrics_and_raises_the_held_out_preference(tmp_path, pairs, bpe):
    models = tmp_path / "models"
    torch.manual_seed(0)
    from lmcore.model.config import ModelConfig
    from lmcore.model.gpt import GPT

    sft = GPT(ModelConfig(vocab_size=bpe.vocab_size, d_model=32, n_layers=1, n_heads=2, context_length=64))
    save_model(models / "sft", sft, {"tokenizer": "t", "loss": "assistant"}, bpe.path, [], {})
    before = evaluate_folder(models / "sft", pairs, log=quiet)["test"]["preferences"]
    folder = resumes_exactly(dpo_entry(), bpe.path, pairs, models, resumed_at=6)
    after = evaluate_folder(folder, pairs, log=quiet)["test"]["preferences"]
    assert after["pairs"] == before["pairs"] > 10 and after["margin"] > before["margin"]
    assert after["accuracy"] > before["accuracy"]
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"} <= set(rows[-1])
    assert "val_rewards/accuracies" in rows[-1]


def with_pairs(**models):
    config = tiny_config("file:///x", None)
    config["sources"]["prefs"] = {"path": "p.jsonl", "documents": {"prompt": "q", "chosen": "c", "rejected": "r"}}
    shape = {"d_model": 32, "n_layers": 1, "n_heads": 2}
    config["models"] = {
        "a": {**shape, "data": {"sources": {"fake": 1}}},
        **{n: {**shape, **m} for n, m in models.items()},
    }
    return config


@pytest.mark.parametrize(
    "model, message",
    [
        ({"dpo": {"reference": {"model": "a"}}}, r"models\.b\.dpo': DPO learns from preference pairs, but source"),
        ({"dpo": {"reference": {"model": "x"}}, "data": {"sources": {"prefs": 1}}}, r"reference\.model': 'x' is not"),
        ({"data": {"sources": {"prefs": 1}}, "loss": "assistant"}, r"'prefs' holds preference pairs, which only"),
        ({"dpo": {"reference": {"model": "b"}}, "data": {"sources": {"prefs": 1}}}, r"b -> b is a cycle"),
        ({"dpo": {"reference": {"model": "a"}}, "data": {"sources": {"prefs": 1}}, "parallelism": "fsdp", "gpus": 2},
         r"models\.b\.dpo': with parallelism: ddp"),
    ],
)  # fmt: skip
def test_a_dpo_entry_that_could_not_work_is_a_config_error(model, message):
    with pytest.raises(ConfigError, match=message):
        prepare_config(with_pairs(b=model), SCHEMA)


def test_a_model_reading_every_source_must_leave_the_pairs_out():
    config = with_pairs()
    del config["models"]["a"]["data"]
    with pytest.raises(ConfigError, match=r"models\.a\.data\.sources': source 'prefs' holds preference pairs"):
        prepare_config(config, SCHEMA)


def test_the_report_puts_base_sft_and_dpo_side_by_side_on_held_out_pairs():
    from lmcore.report.page import preference_table

    config = {
        "models": {
            "base": {},
            "sft": {"loss": "assistant"},
            "dpo": {"dpo": {"beta": 0.1, "reference": {"model": "sft"}}},
        }
    }
    scores = {"base": 0.5, "sft": 0.6, "dpo": 0.8}
    models = {
        n: {"eval": {"test": {"preferences": {"pairs": 40, "accuracy": a, "accuracy_per_token": a, "margin": a}}}}
        for n, a in scores.items()
    }
    rows = preference_table(config, models)["rows"]
    assert [r[:2] for r in rows] == [["base", "pretraining"], ["sft", "SFT"], ["dpo", "DPO, beta 0.1 against sft"]]
    assert preference_table(config, {"base": {"eval": {"test": {}}}}) is None
