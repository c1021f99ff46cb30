"""A conversation with a trained model: what `python -m lmcore chat` runs.

Each turn renders the whole history with the chat template (lmcore.tokens.chat) and the model continues
after `<|assistant|>` until it writes `<|end|>` (or the end of text, or max_new_tokens). A history longer
than the model's window loses its oldest exchanges first (a system message stays), and the person is told.
"""

import json
import sys

import numpy as np

from lmcore.model.generate import decode, stream_text
from lmcore.tokens.chat import END, chat_ids, parse, render
from lmcore.tokens.shards import TokenDataset, conversation_sources

PRESET_DEFAULTS = {"temperature": 1.0, "top_k": None, "top_p": 1.0, "beams": 1}  # a preset's unstated keys


def fit_history(tokenizer, history, window, room):
    """(messages that fit, exchanges dropped): the oldest user/assistant exchanges left out until the
    prompt leaves `room` tokens of the window for the reply. The system message and the newest user
    message always stay (a message longer than the window alone is cut at its start by the model)."""
    system = [m for m in history[:1] if m["role"] == "system"]
    turns, dropped = history[len(system) :], 0
    while len(turns) > 1 and len(render(tokenizer, system + turns, add_generation_prompt=True)[0]) > window - room:
        turns, dropped = turns[2:] if len(turns) > 2 else turns[1:], dropped + 1  # a question and its answer
    return system + turns, dropped


def reply(model, tokenizer, history, sampling):
    """Yield the assistant's next message a piece of text at a time, as it is generated; `sampling`:
    max_new_tokens, temperature, top_k, top_p, seed; or beams, length_penalty, early_stopping (generate.decode)."""
    prompt = render(tokenizer, history, add_generation_prompt=True)[0].tolist()
    stops = {chat_ids(tokenizer)[END], tokenizer.eot_id}
    tokens = decode(model, prompt, stop=stops, **sampling)
    yield from stream_text(tokenizer, (t for t in tokens if t not in stops))


def held_out_conversations(model, tokenizer, manifest_path, n, presets, max_new_tokens, seed):
    """The model's replies to the last user message of the first `n` conversations of the test split (each
    source that holds them), beside the reply the data holds, once per decoding preset."""
    sources = conversation_sources(manifest_path)
    data = TokenDataset(manifest_path, "test", tokenizer.fingerprint, dict.fromkeys(sources, 1), chat_ids(tokenizer))
    rows = []
    for source in sources:
        stream = data.by_source[source]
        starts = np.append(data.conversation_starts(stream), stream.total)[: n + 1]
        for start, stop in zip(starts[:-1], starts[1:]):
            messages = parse(tokenizer, stream.read(data.array, start, stop - start))
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            sampling = {"max_new_tokens": max_new_tokens, "seed": seed + len(rows)}  # a stream per conversation
            history, _ = fit_history(tokenizer, messages[:last], model.cfg.context_length, room_for(model, sampling))
            replies = {
                name: "".join(reply(model, tokenizer, history, {**sampling, **PRESET_DEFAULTS, **preset}))
                for name, preset in sorted(presets.items())
            }
            rows.append(
                {"source": source, "messages": history, "reference": messages[last]["content"], "replies": replies}
            )
    return rows


def room_for(model, sampling):
    """The tokens a reply may take of the window: max_new_tokens, at most half the window."""
    return min(sampling["max_new_tokens"], model.cfg.context_length // 2)


def one_shot(model, tokenizer, message, system, sampling, out=None):
    """`--message`: one reply, as JSON {reply, dropped_exchanges}, for scripts."""
    out = out or sys.stdout
    history = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": message}]
    history, dropped = fit_history(tokenizer, history, model.cfg.context_length, room_for(model, sampling))
    text = "".join(reply(model, tokenizer, history, sampling))
    out.write(json.dumps({"reply": text, "dropped_exchanges": dropped}, ensure_ascii=False) + "\n")


def terminal(model, tokenizer, system, sampling, read=input, out=None):
    """A conversation at a terminal: a line is a message, the reply streams back; Ctrl-D (end of input) leaves."""
    out = out or sys.stdout
    history = [{"role": "system", "content": system}] if system else []
    out.write(f"Chatting with a model of {model.cfg.context_length} tokens of context; Ctrl-D leaves.\n")
    seed = sampling["seed"]
    while True:
        try:
            message = read("you> ")
        except EOFError:
            out.write("\n")
            return
        if not message.strip():
            continue
        history.append({"role": "user", "content": message})
        history, dropped = fit_history(tokenizer, history, model.cfg.context_length, room_for(model, sampling))
        if dropped:
            out.write(f"(the {dropped} oldest exchange{'s' if dropped > 1 else ''} left the model's window)\n")
        out.write("model> ")
        text = ""
        for piece in reply(model, tokenizer, history, {**sampling, "seed": seed}):
            out.write(piece)
            out.flush()
            text += piece
        out.write("\n")
        history.append({"role": "assistant", "content": text})
        seed += 1  # each reply its own draw, the conversation still repeatable
