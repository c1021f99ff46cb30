"""Conversations and the one chat template lmcore uses everywhere.

A conversation is a list of messages `{"role", "content"}` (the OpenAI and Hugging Face `messages`
convention): roles system (first, at most once), user and assistant, content text. It renders as

    <|system|>You are terse.<|end|><|user|>Hi<|end|><|assistant|>Hello.<|end|>

The four markers are control pieces of every tokenizer lmcore trains (lmcore.tokens.tokenizer.train):
they have ids of their own and encoding text never produces them, so a text that spells `<|user|>`
is the characters it spells. The text between markers is encoded as any text is, so the ids are the
markers' and each content's own: what the Hugging Face template below gives through
`tokenizer.apply_chat_template`, and llama.cpp's chat completion through the GGUF file's copy of it.

SFT trains on the assistant's turns only (`loss: assistant`): the loss mask is 1 on each assistant
content's ids and on the `<|end|>` that closes it (the model learns to stop), 0 on the rest.
"""

import numpy as np

ROLES = ("system", "user", "assistant")
END = "<|end|>"
MARKERS = {role: f"<|{role}|>" for role in ROLES}
CHAT_PIECES = (*MARKERS.values(), END)  # reserved in every tokenizer, in this order
IGNORE = -1  # the target of a position the loss leaves out (GPT.forward): a conversation's context

# The same rendering in Jinja, for tokenizer_config.json's `chat_template` and GGUF's `tokenizer.chat_template`.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def is_chat_model(entry):
    """Whether a model entry trains on conversations' answers (`loss: assistant`): its exports carry the
    template; a base model's do not."""
    return entry.get("loss") == "assistant"


class BadConversation(ValueError):
    """A record that is not a conversation lmcore can train on: `reason` is the kind of problem (what ingest
    counts skips by), the message says where it is."""

    def __init__(self, reason, detail):
        super().__init__(f"{detail}" if detail.startswith(reason) else f"{reason}: {detail}")
        self.reason = reason


def check_conversation(messages, answered=True):
    """The messages as (role, content) pairs, or BadConversation naming the first problem. `answered`: the
    conversation must hold an assistant message with something in it (a prompt to be answered need not)."""
    if not isinstance(messages, list) or not messages:
        raise BadConversation("not a list of messages", f"not a list of messages: {str(messages)[:80]!r}")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise BadConversation(
                "a message not {role, content}", f"message {i} is not {{role, content}}: {str(message)[:80]!r}"
            )
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise BadConversation(
                f"role {str(role)[:20]!r}", f"message {i} has role {role!r}, not one of {', '.join(ROLES)}"
            )
        if not isinstance(content, str):
            raise BadConversation(
                "content not text", f"message {i} ({role}) has content that is not text: {str(content)[:80]!r}"
            )
        if role == "system" and i > 0:
            raise BadConversation(
                "a system message after the first", f"message {i} is a system message after the first"
            )
        turns.append((role, content))
    if answered and not any(role == "assistant" and content.strip() for role, content in turns):
        raise BadConversation("no assistant message", "no assistant message with text: nothing to learn from")
    return turns


def check_pair(turns, rejected):
    """The rejected answer of a preference pair whose chosen conversation is `turns`, or BadConversation: the
    conversation must end with the chosen assistant message, and the rejected answer be other text."""
    if turns[-1][0] != "assistant":
        raise BadConversation("no chosen answer last", "the chosen conversation does not end with an assistant message")
    if not isinstance(rejected, str) or not rejected.strip():
        raise BadConversation("rejected answer not text", f"the rejected answer is not text: {str(rejected)[:80]!r}")
    if rejected == turns[-1][1]:
        raise BadConversation("rejected answer equals the chosen", "the rejected answer is the chosen one")
    return rejected


def text_of(turns):
    """The text a conversation's tokens encode, its contents one after another (what dedup compares, the
    tokenizer learns from and bits per byte divide by): no markers, which are tokens of their own."""
    return "\n\n".join(content for _, content in turns)


def chat_ids(tokenizer):
    """{marker: id} of a tokenizer's chat pieces; a tokenizer without them (a `model_file` of other origin)
    cannot render conversations."""
    ids = {piece: tokenizer.sp.piece_to_id(piece) for piece in CHAT_PIECES}
    missing = [piece for piece, i in ids.items() if tokenizer.sp.id_to_piece(i) != piece]
    if missing:
        raise ValueError(
            f"{tokenizer.path}: no piece {', '.join(missing)}: the chat template needs the tokenizers lmcore "
            "trains (they reserve its markers)"
        )
    return ids


def assemble(marker, turns, contents, add_generation_prompt=False):
    """(ids, mask) of (role, content) turns whose contents are already encoded (`contents`, a list of ids each)."""
    ids, mask = [], []
    for (role, _), content in zip(turns, contents):
        body = [marker[MARKERS[role]], *content, marker[END]]
        ids += body
        mask += [False] + [role == "assistant"] * (len(body) - 1)
    if add_generation_prompt:
        ids.append(marker[MARKERS["assistant"]])
        mask.append(False)
    return np.array(ids, dtype=np.int64), np.array(mask, dtype=bool)


def render(tokenizer, messages, add_generation_prompt=False):
    """(ids, mask) of a conversation as int64 and bool arrays of one length: the template's ids, and True
    where the loss is taken (each assistant content and its end). With `add_generation_prompt` the ids end
    with `<|assistant|>`, where a model continues with its reply."""
    turns = check_conversation(messages, answered=not add_generation_prompt)
    contents = [tokenizer.encode(content) for _, content in turns]
    return assemble(chat_ids(tokenizer), turns, contents, add_generation_prompt)


def loss_mask(ids, marker):
    """The mask `render` gives, recomputed from ids alone (the markers are ids no text encodes to, so the
    shards need not store it): True from the id after each `<|assistant|>` through the `<|end|>` that
    closes its turn, False elsewhere. `ids` must start at a conversation's start (or outside one)."""
    ids = np.asarray(ids)  # (T,) or (B, T): rows
    is_marker = np.isin(ids, list(marker.values()))
    # the id of the latest marker at or before each position of a row (-1 before the first)
    at = np.broadcast_to(np.arange(ids.shape[-1]), ids.shape)
    latest = np.maximum.accumulate(np.where(is_marker, at, -1), axis=-1)
    latest_id = np.where(latest >= 0, np.take_along_axis(ids, np.maximum(latest, 0), axis=-1), -1)
    none = np.full((*ids.shape[:-1], 1), -1)
    before = np.concatenate([none, latest_id[..., :-1]], axis=-1)  # the latest marker strictly before each position
    assistant, end = marker[MARKERS["assistant"]], marker[END]
    return (before == assistant) & (~is_marker | (ids == end))


def parse(tokenizer, ids):
    """The messages of a conversation's ids as `render` wrote them (lossless: encoding is), up to its end."""
    role_of = {i: piece[2:-2] for piece, i in chat_ids(tokenizer).items() if piece != END}
    end, messages, content, role = chat_ids(tokenizer)[END], [], [], None
    for i in ids:
        if i in role_of:
            role, content = role_of[i], []
        elif i == end and role:
            messages.append({"role": role, "content": tokenizer.decode(content)})
            role = None
        elif role:
            content.append(int(i))
    return messages
