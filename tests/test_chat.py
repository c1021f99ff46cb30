"""Conversations and the one chat template (lmcore.tokens.chat): the markers are pieces no text encodes to,
a conversation renders to the markers' ids and each content's own with the loss on the answers, and the
Hugging Face and GGUF exports of a chat model carry the same template."""

import json

import pytest

from helpers import FAMILIES, chat_folder, conversations, trained_folder
from lmcore.tokens.chat import CHAT_PIECES, BadConversation, check_conversation, render


def test_the_markers_are_pieces_that_no_text_encodes_to(bpe):
    ids = {piece: bpe.sp.piece_to_id(piece) for piece in CHAT_PIECES}
    assert all(bpe.sp.id_to_piece(i) == piece and bpe.sp.is_control(i) for piece, i in ids.items())
    spelled = bpe.encode("say <|user|> then <|assistant|> and <|end|>")
    assert not set(spelled) & set(ids.values())
    assert bpe.decode(spelled) == "say <|user|> then <|assistant|> and <|end|>"


def test_a_conversation_renders_to_the_markers_and_each_contents_ids_with_the_loss_on_the_answers(bpe):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who is king?"},
        {"role": "assistant", "content": "The king."},
        {"role": "user", "content": "And queen?"},
        {"role": "assistant", "content": "The queen.\n"},
    ]
    ids, mask = render(bpe, messages)
    marker = {piece: bpe.sp.piece_to_id(piece) for piece in CHAT_PIECES}
    expected, loss = [], []
    for m in messages:
        body = [marker[f"<|{m['role']}|>"], *bpe.encode(m["content"]), marker["<|end|>"]]
        expected += body
        loss += [False] + [m["role"] == "assistant"] * (len(body) - 1)  # an answer and the end that closes it
    assert ids.tolist() == expected and mask.tolist() == loss
    prompt, prompt_mask = render(bpe, messages[:2], add_generation_prompt=True)
    assert prompt.tolist()[-1] == marker["<|assistant|>"] and not prompt_mask.any()


@pytest.mark.parametrize(
    "messages, message",
    [
        ([{"role": "user", "content": "hi"}], "no assistant message"),
        ([{"role": "bot", "content": "hi"}], "message 0 has role 'bot', not one of system, user, assistant"),
        ([{"role": "user", "content": ["hi"]}], "message 0 \\(user\\) has content that is not text"),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "message 1 is a system message"),
        ([{"role": "user"}], "message 0 is not \\{role, content\\}"),
        ("hi", "not a list of messages"),
    ],
)
def test_a_record_that_is_not_a_conversation_is_named(messages, message):
    with pytest.raises(BadConversation, match=message):
        check_conversation(messages)


def test_transformers_apply_chat_template_gives_lmcores_ids_on_50_conversations(tmp_path, bpe):
    transformers = pytest.importorskip("transformers")
    from lmcore.export.hf import export

    export(chat_folder(tmp_path, bpe), tmp_path / "hf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")

    def ids(messages, **options):
        return theirs.apply_chat_template(messages, tokenize=True, return_dict=True, **options)["input_ids"]

    for messages in conversations(50):
        assert ids(messages) == render(bpe, messages)[0].tolist()
        prompt = messages[:-1]
        assert ids(prompt, add_generation_prompt=True) == render(bpe, prompt, add_generation_prompt=True)[0].tolist()


def test_transformers_generate_on_a_chat_models_folder_replies_as_lmcore_and_stops_at_the_turns_end(tmp_path, bpe):
    transformers = pytest.importorskip("transformers")
    import torch

    from lmcore.export.hf import export
    from lmcore.model.config import ModelConfig
    from lmcore.model.folder import save_model
    from lmcore.model.generate import generate
    from lmcore.model.gpt import GPT

    end = bpe.sp.piece_to_id("<|end|>")
    torch.manual_seed(0)
    ours = GPT(ModelConfig(vocab_size=bpe.vocab_size, d_model=32, n_layers=2, n_heads=4, context_length=96,
                           **FAMILIES["llama-untied"])).eval()  # fmt: skip
    prompts = [render(bpe, m[:-1], add_generation_prompt=True)[0].tolist() for m in conversations(5, seed=9)]
    third = list(generate(ours, prompts[0], 3, temperature=0.0))[2]
    with torch.no_grad():  # the head's rows of that token and <|end|> swapped: the first reply ends at its third
        ours.lm_head.weight[[third, end]] = ours.lm_head.weight[[end, third]]
    save_model(tmp_path / "model", ours, {"tokenizer": "t", "loss": "assistant"}, bpe.path, [], {})
    export(tmp_path / "model", tmp_path / "hf")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    stops = {end, bpe.eot_id}
    for i, prompt in enumerate(prompts):
        with torch.no_grad():
            out = theirs.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt) :]
        expected = list(generate(ours, prompt, 12, temperature=0.0, stop=stops))
        assert out.tolist() == expected and (i > 0 or expected[-1] == end and len(expected) == 3)


def test_a_base_models_exports_have_no_chat_template_and_a_chat_models_gguf_has_it(tmp_path, bpe):
    from gguf import GGUFReader

    from lmcore.export import gguf, hf
    from lmcore.tokens.chat import CHAT_TEMPLATE

    base = trained_folder(tmp_path / "base", bpe, FAMILIES["llama-tied"])
    hf.export(base, tmp_path / "base-hf")
    assert "chat_template" not in json.loads((tmp_path / "base-hf" / "tokenizer_config.json").read_text())
    gguf.export(base, tmp_path / "base.gguf", log=lambda *a: None)
    assert "tokenizer.chat_template" not in GGUFReader(tmp_path / "base.gguf").fields
    gguf.export(chat_folder(tmp_path / "chat", bpe), tmp_path / "chat.gguf", log=lambda *a: None)
    field = GGUFReader(tmp_path / "chat.gguf").fields["tokenizer.chat_template"]
    assert field.contents() == CHAT_TEMPLATE


def test_the_oldest_exchanges_leave_a_history_too_long_for_the_window_and_the_system_message_stays(bpe):
    from lmcore.model.converse import fit_history

    system = {"role": "system", "content": "Be brief."}
    history = [system]
    for i in range(6):
        history += [{"role": "user", "content": f"question {i} " * 3}, {"role": "assistant", "content": "answer " * 3}]
    history.append({"role": "user", "content": "the last question"})
    kept, dropped = fit_history(bpe, history, window=60, room=10)
    assert kept[0] == system and kept[-1] == history[-1] and dropped > 0
    assert kept[1:] == history[1 + 2 * dropped :]  # whole exchanges, oldest first
    assert len(render(bpe, kept, add_generation_prompt=True)[0]) <= 50
    assert fit_history(bpe, history, window=10_000, room=10) == (history, 0)


def test_chat_with_a_message_prints_the_models_reply_as_json(tmp_path, bpe, capsys):
    from lmcore.__main__ import main
    from lmcore.model.folder import load_model
    from lmcore.model.generate import generate

    folder = trained_folder(tmp_path, bpe, FAMILIES["llama-tied"])
    main(["chat", str(folder), "--message", "Who is king?", "--system", "Be brief.", "--seed", "3"])
    out = json.loads(capsys.readouterr().out)
    model, _ = load_model(folder)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who is king?"}]
    prompt = render(bpe, messages, add_generation_prompt=True)[0].tolist()
    ids = list(generate(model, prompt, 256, temperature=0.8, top_p=0.9, seed=3))  # the command's defaults
    end = bpe.sp.piece_to_id("<|end|>")
    ids = ids[: ids.index(end)] if end in ids else ids
    assert ids and out == {"reply": bpe.decode(ids), "dropped_exchanges": 0}


def test_chat_at_a_terminal_answers_each_line_and_ctrl_d_leaves(tmp_path, bpe):
    """Through a pseudo-terminal, as a person types: a message, its streamed reply, another, then Ctrl-D."""
    import os
    import pty
    import select
    import subprocess
    import sys

    folder = trained_folder(tmp_path, bpe, FAMILIES["llama-tied"])
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmcore", "chat", str(folder), "--max-new-tokens", "4", "--temperature", "0"],
        stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True,
    )  # fmt: skip
    os.close(secondary)
    seen, at = b"", 0  # what the terminal showed, and how far the markers waited for so far were found

    def read_until(marker, timeout=60):
        nonlocal seen, at
        while marker not in seen[at:]:  # a short reply and the next prompt may come in one read
            ready, _, _ = select.select([primary], [], [], timeout)
            assert ready, seen.decode(errors="replace")
            seen += os.read(primary, 4096)
        at = seen.index(marker, at) + len(marker)

    read_until(b"you> ")
    for message in (b"Who is king?\n", b"And the queen?\n"):
        os.write(primary, message)
        read_until(b"model> ")
        read_until(b"you> ")
    os.write(primary, b"\x04")  # Ctrl-D at the start of a line: end of input
    assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    os.close(primary)
    text = seen.decode(errors="replace")
    assert "Ctrl-D leaves" in text and text.count("model> ") == 2 and "Traceback" not in text
