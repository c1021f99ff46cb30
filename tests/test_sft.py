"""Supervised fine-tuning (`loss: assistant`): trained on the answers of conversations, resumed exactly,
scored on held-out answers beside a base model, replying to held-out conversations; and the config
errors that stop an SFT entry that could not work before any job runs."""

import numpy as np
import pytest
import torch

from helpers import SCHEMA, chat_shards, conversations, resumes_exactly, tiny_config, tiny_entry
from lmcore.config import ConfigError, prepare_config
from lmcore.evaluation.perplexity import evaluate_answers, evaluate_folder
from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT
from lmcore.tokens.chat import chat_ids, loss_mask, parse, render
from lmcore.tokens.shards import TokenDataset

quiet = lambda *a: None  # noqa: E731


def sft_entry(**changes):
    return tiny_entry(loss="assistant", context_length=256, batch_size=4, max_steps=12, eval_interval=4,
                      checkpoint_interval=6, keep_checkpoints=3, **changes)  # fmt: skip


@pytest.fixture(scope="module")
def chats(tmp_path_factory, bpe):
    folder = tmp_path_factory.mktemp("chats")
    chat_shards(folder, bpe, n=120)
    return folder / "manifest.json"


def test_sft_learns_the_answers_and_a_resumed_run_ends_with_the_weights_of_one_never_stopped(tmp_path, bpe, chats):
    folder = resumes_exactly(sft_entry(lr=0.01), bpe.path, chats, tmp_path, resumed_at=6)
    result = evaluate_folder(folder, chats, log=quiet)
    answers = result["test"]["answers"]
    tokens = np.load(chats.parent / "test.npy")
    assert max(map(len, np.split(tokens, np.flatnonzero(tokens == bpe.eot_id)))) <= 257  # every conversation fits
    assert answers["tokens"] == int(loss_mask(tokens, chat_ids(bpe)).sum())
    torch.manual_seed(0)
    untrained = GPT(ModelConfig(vocab_size=bpe.vocab_size, d_model=32, n_layers=1, n_heads=2, context_length=256))
    data = TokenDataset(chats, "test", bpe.fingerprint, {"corpus": 1}, chat_ids(bpe))
    before = evaluate_answers(untrained, data, bpe.token_bytes())
    assert answers["bits_per_byte"] < before["bits_per_byte"] and answers["bytes"] == before["bytes"]


def test_the_sft_loss_is_the_mean_over_the_answers_alone(bpe, chats):
    data = TokenDataset(chats, "train", bpe.fingerprint, answers=chat_ids(bpe))
    x, y, segments = (torch.from_numpy(a) for a in data.sample_batch(np.random.default_rng(3), 4, 64))
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=bpe.vocab_size, d_model=32, n_layers=1, n_heads=2, context_length=64))
    logits, loss = model(x, y, segments)
    scored = y != -1
    by_hand = torch.nn.functional.cross_entropy(logits[scored].float(), y[scored])
    assert torch.allclose(loss, by_hand) and 0 < scored.sum() < scored.numel()
    # each conversation sees itself only: the logits of a row's second conversation are those of it alone
    second = (segments[0] == 1).nonzero().flatten()
    alone = model(x[:1, second])[0]
    assert torch.allclose(logits[0, second], alone[0], atol=1e-5)


def test_parse_reads_back_the_messages_render_wrote(bpe):
    for messages in conversations(20, seed=5):
        assert parse(bpe, render(bpe, messages)[0]) == messages


def test_a_model_replies_to_held_out_conversations_beside_the_reply_in_the_data(tmp_path, bpe, chats):
    from lmcore.model.converse import held_out_conversations

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=bpe.vocab_size, d_model=32, n_layers=1, n_heads=2, context_length=64))
    presets = {"greedy": {"temperature": 0.0}, "warm": {"temperature": 0.9, "top_p": 0.9}}
    rows = held_out_conversations(model, bpe, chats, 2, presets, 5, seed=0)
    tokens = np.load(chats.parent / "test.npy")
    first = parse(bpe, tokens[: np.flatnonzero(tokens == bpe.eot_id)[0]])
    assert len(rows) == 2 and rows[0]["messages"] == first[:-1] and rows[0]["reference"] == first[-1]["content"]
    assert set(rows[0]["replies"]) == {"greedy", "warm"}


def config_with(**changes):
    config = tiny_config("file:///x", None)
    config["sources"]["talk"] = {"url": "file:///y", "documents": {"chat": "messages"}}
    for key, value in changes.items():
        config["models"]["a"][key] = value
    return config


def test_an_sft_entry_reading_a_source_without_conversations_is_a_config_error():
    with pytest.raises(ConfigError, match=r"models.a.loss': .*source 'fake' holds no conversations"):
        prepare_config(config_with(loss="assistant"), SCHEMA)
    prepare_config(config_with(loss="assistant", data={"sources": {"talk": 1}}), SCHEMA)  # the conversations alone


@pytest.mark.parametrize(
    "documents, message",
    [
        ({"dialogue": "^[A-Z]+\\.$"}, "has no group; its first group is the speaker's name"),
        ({"dialogue": "^([A-Z]+\\.$"}, "documents.dialogue': .*missing \\)"),
        ({"dialogue": "^([A-Z]+)\\.$", "scene": "(ACT"}, "documents.scene'"),
    ],
)
def test_a_dialogue_pattern_that_cannot_name_speakers_is_a_config_error(documents, message):
    config = tiny_config("file:///x", None)
    config["sources"]["fake"]["documents"] = documents
    with pytest.raises(ConfigError, match=message):
        prepare_config(config, SCHEMA)
