"""Conversations as data: read from JSON Lines, parquet and a play's text, bad records counted by what is
wrong with them, rendered into shards with the chat template, and read back for SFT: windows that start at
a conversation, keep conversations apart and take the loss on the answers only."""

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import chat_shards, conversations
from lmcore.tokens.chat import IGNORE, chat_ids, loss_mask, render
from lmcore.tokens.shards import TokenDataset
from test_ingest import run_ingest

PLAY = """THE TRAGEDY OF MACBETH

Dramatis Personae
MACBETH.
BANQUO.

ACT I.

SCENE I. A heath.

[Enter three Witches.]

FIRST WITCH.
When shall we three meet again?
In thunder, lightning, or in rain?

SECOND WITCH.
When the hurlyburly's done,
[Thunder.]
When the battle's lost and won.

SECOND WITCH.
That will be ere the set of sun.

FIRST WITCH.
Where the place?

SCENE II. A camp.

DUNCAN.
What bloody man is that?

[Exeunt.]
MALCOLM.
This is the sergeant."""


def write_lines(path, records):
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_chat_records_from_compressed_json_lines_and_parquet_with_bad_ones_counted_per_reason(tmp_path):
    good = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi\r\n"},
            {"role": "assistant", "content": "Hello."}]  # fmt: skip
    records = [
        {"key": "a", "lang": "en", "messages": good},
        {"key": "b", "lang": "en", "messages": [{"role": "user", "content": "alone"}]},
        {"key": "c", "lang": "en", "messages": [{"role": "bot", "content": "x"}, *good[1:]]},
        {"key": "d", "lang": "en", "messages": [{"role": "user", "content": ["x"]}, good[2]]},
        {"key": "e", "lang": "fr", "messages": good},
        {"key": "f", "lang": "en", "messages": good[1:]},
    ]
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    write_lines(files / "chats.jsonl.gz", records[:4])
    pq.write_table(pa.Table.from_pylist(records[4:]), files / "more.parquet")
    documents = {"chat": "messages", "id": "key", "meta": ["lang"]}
    docs, stats = run_ingest("talk", tmp_path / "raw", documents, where={"lang": {"in": ["en"]}})
    assert sorted(d["id"] for d in docs) == ["talk/a", "talk/f"]
    doc = next(d for d in docs if d["id"] == "talk/a")
    assert doc["messages"][1] == {"role": "user", "content": "Hi\n"}  # normalised as any text is
    assert doc["text"] == "Be brief.\n\nHi\n\n\nHello." and doc["meta"]["lang"] == "en"
    assert stats["dropped"] == {
        "not a conversation: no assistant message": 1,
        "not a conversation: role 'bot'": 1,
        "not a conversation: content not text": 1,
        'where lang in ["en"]': 1,
    }


def test_prompt_and_response_fields_make_one_exchange_after_the_system_field(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    write_lines(files / "pairs.jsonl", [{"q": "Who?", "a": "Me.", "sys": "Be kind."}, {"q": "Why?", "a": ""}])
    docs, stats = run_ingest("qa", tmp_path / "raw", {"prompt": "q", "response": "a", "system": "sys"})
    assert [d["messages"] for d in docs] == [
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Who?"},
         {"role": "assistant", "content": "Me."}]
    ]  # fmt: skip
    assert stats["dropped"] == {"not a conversation: no assistant message": 1}  # an empty answer teaches nothing


def test_a_named_field_missing_from_a_record_is_an_error_naming_the_file_and_line(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    write_lines(files / "pairs.jsonl", [{"question": "Who?", "a": "Me."}])
    with pytest.raises(ingest_error(), match="pairs.jsonl:1: no field 'q'"):
        run_ingest("qa", tmp_path / "raw", {"prompt": "q", "response": "a"})


def ingest_error():
    from lmcore.data.formats import BadFile

    return BadFile


def test_a_plays_speeches_answer_each_other_within_a_scene_without_stage_directions(tmp_path):
    files = tmp_path / "raw" / "files"
    files.mkdir(parents=True)
    (files / "macbeth.txt").write_text(PLAY)
    docs, _ = run_ingest("play", tmp_path / "raw", {"dialogue": r"^([A-Z][A-Z' -]*[A-Z])\.$"})
    chats = [[m["content"] for m in d["messages"]] for d in sorted(docs, key=lambda d: int(d["id"].split("#")[1]))]
    assert chats == [
        ["You are SECOND WITCH. FIRST WITCH speaks to you.",
         "When shall we three meet again?\nIn thunder, lightning, or in rain?",
         "When the hurlyburly's done,\nWhen the battle's lost and won."],
        # SECOND WITCH speaks twice: the second speech answers no one; the next scene answers nothing before it
        ["You are FIRST WITCH. SECOND WITCH speaks to you.", "That will be ere the set of sun.", "Where the place?"],
        ["You are MALCOLM. DUNCAN speaks to you.", "What bloody man is that?", "This is the sergeant."],
    ]  # fmt: skip


def test_shards_hold_each_conversation_as_the_template_renders_it(tmp_path, bpe):
    docs, stats = chat_shards(tmp_path, bpe)
    test = np.load(tmp_path / "test.npy")
    rendered = [render(bpe, d["messages"])[0] for d in docs]
    pieces = np.split(test, np.flatnonzero(test == bpe.eot_id)[:-1] + 1)
    assert all(any(np.array_equal(p[:-1], r) for r in rendered) for p in pieces)  # each ends with end-of-text
    assert stats["test"]["conversations"] == len(pieces) == stats["test"]["documents"]
    assert stats["test"]["bytes"] == int(bpe.token_bytes()[test].sum())  # bytes of what the tokens encode


def test_the_loss_mask_recomputed_from_ids_is_the_one_render_gives(bpe):
    marker = chat_ids(bpe)
    for messages in conversations(20, seed=2):
        ids, mask = render(bpe, messages)
        assert np.array_equal(loss_mask(ids, marker), mask)


def test_sft_windows_start_at_a_conversation_keep_conversations_apart_and_score_answers_only(tmp_path, bpe):
    docs, _ = chat_shards(tmp_path, bpe)
    marker = chat_ids(bpe)
    data = TokenDataset(tmp_path / "manifest.json", "train", bpe.fingerprint, answers=marker)
    x, y, segments = data.sample_batch(np.random.default_rng(0), 8, 48)
    assert x.shape == y.shape == segments.shape == (8, 48)
    starts = {marker["<|system|>"], marker["<|user|>"]}
    assert all(row[0] in starts for row in x)  # a window starts where a conversation does
    assert (y != IGNORE).any()
    for row_x, row_y, row_s in zip(x, y, segments):
        scored = row_y != IGNORE  # the answers' ids and their ends, as render's mask says, and nothing else
        assert np.array_equal(scored[:-1], loss_mask(row_x, marker)[1:])
        assert np.array_equal(row_y[:-1][scored[:-1]], row_x[1:][scored[:-1]])
        # a conversation's segment ends with its end-of-text id; the next one starts a new segment
        assert np.array_equal(np.flatnonzero(np.diff(row_s)), np.flatnonzero(row_x[:-1] == bpe.eot_id))


def test_answer_windows_score_every_answer_token_of_the_split_once(tmp_path, bpe):
    chat_shards(tmp_path, bpe)
    marker = chat_ids(bpe)
    data = TokenDataset(tmp_path / "manifest.json", "test", bpe.fingerprint, answers=marker)
    tokens = np.load(tmp_path / "test.npy")
    longest = max(len(p) for p in np.split(tokens, np.flatnonzero(tokens == bpe.eot_id)[:-1] + 1))
    windows = list(data.answer_windows(longest))
    assert sum(int((y != IGNORE).sum()) for _, _, y, _ in windows) == int(loss_mask(tokens, marker).sum())
    assert len(windows) < int((tokens == bpe.eot_id).sum())  # several conversations share a window
    short = list(data.answer_windows(16))  # longer conversations are scored on their first 17 tokens
    assert all(len(x) <= 16 for _, x, _, _ in short) and len(short) > len(windows)
