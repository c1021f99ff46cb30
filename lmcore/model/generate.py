"""Decoding from a trained model: greedy, temperature, top-k, top-p (nucleus), seeded, with a KV cache; and beam
search (lmcore.model.beam)."""

import torch

from lmcore.model.beam import beam_search


def top_p_filter(probs, p):
    """Keep the smallest set of most likely tokens whose mass reaches p (the top token always survives); renormalise."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs[mass_before >= p] = 0.0
    out = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return out / out.sum(dim=-1, keepdim=True)


def next_token_probs(logits, temperature=1.0, top_k=None, top_p=1.0):
    if temperature <= 0:
        raise ValueError(f"temperature must be above 0 for sampling, got {temperature}; use greedy decoding instead")
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return top_p_filter(probs, top_p) if top_p < 1.0 else probs


@torch.no_grad()
def generate(model, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=1.0, seed=0, stop=(), use_cache=True):
    """Yield new token ids one at a time, the last one in `stop` (end of text, a chat turn's end) if it came;
    temperature 0 is greedy.

    The KV cache serves while the sequence fits the model's window; past it, the
    context is cropped to the last window of tokens and recomputed each step, since
    every position shifts. Cached and uncached decoding therefore agree.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    ids, window, caches = list(ids), model.cfg.context_length, None
    for _ in range(max_new_tokens):
        if caches is not None and len(ids) <= window:
            logits = model(torch.tensor([ids[-1:]], device=device), caches=caches, start=len(ids) - 1)[0][0, -1]
        else:
            caches = [{} for _ in model.blocks] if use_cache and len(ids) <= window else None
            logits = model(torch.tensor([ids[-window:]], device=device), caches=caches)[0][0, -1]
        if temperature == 0:
            token = int(logits.argmax())
        else:
            token = int(torch.multinomial(next_token_probs(logits, temperature, top_k, top_p), 1, generator=generator))
        ids.append(token)
        yield token
        if token in stop:
            return


def decode(
    model, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=1.0, seed=0, stop=(), beams=1,
    length_penalty=1.0, early_stopping=False, use_cache=True,
):  # fmt: skip
    """New token ids as `generate` yields them; with beams > 1, the best beam's (beam search: temperature, top_k and
    top_p unused), all at once when the search ends."""
    if beams > 1:
        yield from beam_search(model, ids, max_new_tokens, beams, length_penalty, early_stopping, stop, use_cache)
    else:
        yield from generate(model, ids, max_new_tokens, temperature, top_k, top_p, seed, stop, use_cache)


def stream_text(tokenizer, tokens):
    """The text of `tokens` (ids, as they come) a piece at a time: the whole tail is decoded each time, since a
    character may span several byte tokens, and held back while it ends mid-character; bytes that end the
    ids without making a character come last."""
    ids, shown = [], ""
    for token in tokens:
        ids.append(token)
        text = tokenizer.decode(ids)
        if not text.endswith("\ufffd"):
            yield text[len(shown) :]
            shown = text
    text = tokenizer.decode(ids)
    if text != shown:
        yield text[len(shown) :]


def sample_grid(model, tokenizer, prompts, presets, max_new_tokens, seed):
    """One sample per prompt and named preset ({temperature, top_k, top_p} or {beams, length_penalty, early_stopping};
    temperature 0 is greedy)."""
    rows = []
    for prompt in prompts:
        for name, preset in sorted(presets.items()):
            ids = list(
                decode(model, tokenizer.encode(prompt), max_new_tokens, seed=seed, stop={tokenizer.eot_id}, **preset)
            )
            rows.append(
                {
                    "prompt": prompt,
                    "preset": name,
                    "settings": preset,
                    "completion": tokenizer.decode(ids),
                    "tokens": len(ids),
                }
            )
    return rows
