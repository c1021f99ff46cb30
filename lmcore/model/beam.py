"""Beam search as transformers' `generate(num_beams=..., length_penalty=..., early_stopping=...)` does it (its
vectorised `_beam_search` of version 4.50 on), so that the same model gives the same ids either way.

Each step every beam's next-token log-probabilities are added to the beam's running sum; of the beams x vocabulary
continuations the best K = max(2, 1 + stop tokens) x beams are kept. A continuation that ends (a stop token, or the
last allowed token) and ranks among the first `beams` of them becomes a finished hypothesis, scored by its sum of
log-probabilities over its generated length to the power `length_penalty`; the best `beams` that do not end
continue. The search stops when no running beam can beat the worst of `beams` finished ones (early_stopping
False: judged at the current length; "never": at the longest length, where length_penalty > 0; True: as soon as
`beams` hypotheses have finished).
"""

import torch

BLOCKED = -1.0e9  # what transformers adds to a score to take it out of the running


def beam_step_logits(model, running, cur_len, caches, parents, window):
    """The last position's logits of each running beam (beams, vocab): one new token through the KV cache, its rows
    reordered to the beams' parents; the whole (cropped) sequences where the cache does not serve."""
    if caches is not None and parents is not None and cur_len <= window:
        for cache in caches:
            cache["k"], cache["v"] = cache["k"][parents], cache["v"][parents]
        return model(running[:, cur_len - 1 : cur_len], caches=caches, start=cur_len - 1)[0][:, -1], caches
    caches = [{} for _ in model.blocks] if caches is not None and cur_len <= window else None
    start = max(0, cur_len - window)
    return model(running[:, start:cur_len], caches=caches)[0][:, -1], caches


@torch.no_grad()
def beam_search(model, ids, max_new_tokens, beams, length_penalty=1.0, early_stopping=False, stop=(), use_cache=True):
    """The best hypothesis's new ids (a list, its stop token last where it ended on one)."""
    model.eval()
    device = next(model.parameters()).device
    prompt, stop = len(ids), torch.tensor(sorted(stop), dtype=torch.long, device=device)
    max_length, window = prompt + max_new_tokens, model.cfg.context_length
    keep = max(2, 1 + len(stop)) * beams
    top_beams = torch.arange(keep, device=device) < beams  # only these may finish (the rest are spares)
    running = torch.zeros((beams, max_length), dtype=torch.long, device=device)
    running[:, :prompt] = torch.tensor(ids, dtype=torch.long, device=device)
    running_scores = torch.full((beams,), BLOCKED, device=device)
    running_scores[0] = 0.0  # the beams start equal: one of them only, or each continuation would come `beams` times
    finished = running.clone()
    finished_scores = torch.full((beams,), BLOCKED, device=device)
    finished_lengths = torch.zeros(beams, dtype=torch.long, device=device)
    is_finished = torch.zeros(beams, dtype=torch.bool, device=device)
    may_improve = True
    caches, parents = ([] if use_cache else None), None
    for cur_len in range(prompt, max_length):
        logits, caches = beam_step_logits(model, running, cur_len, caches, parents, window)
        log_probs = torch.log_softmax(logits.float(), dim=-1) + running_scores[:, None]
        vocab = log_probs.shape[-1]
        top_scores, top_index = torch.topk(log_probs.reshape(-1), k=keep)
        from_beam, token = top_index // vocab, top_index % vocab
        candidates = running[from_beam].clone()
        candidates[:, cur_len] = token
        ends = torch.isin(token, stop) | (cur_len + 1 >= max_length)

        # the beams that go on: the best `beams` candidates that did not end
        going_on = top_scores + ends.float() * BLOCKED
        chosen = torch.topk(going_on, k=beams)[1]
        running, running_scores, parents = candidates[chosen], going_on[chosen], from_beam[chosen]

        # the finished hypotheses: the best `beams` of those before and those that end now among the first `beams`
        scores = top_scores / ((cur_len + 1 - prompt) ** length_penalty)
        if early_stopping is True and bool(is_finished.all()):
            scores = scores + BLOCKED
        if not may_improve:
            scores = scores + BLOCKED
        just_finished = ends & top_beams
        scores = scores + (~just_finished).float() * BLOCKED
        merged_scores = torch.cat([finished_scores, scores])
        best = torch.topk(merged_scores, k=beams)[1]
        finished = torch.cat([finished, candidates])[best]
        finished_scores = merged_scores[best]
        finished_lengths = torch.cat([finished_lengths, torch.full((keep,), cur_len + 1 - prompt, device=device)])[best]
        is_finished = torch.cat([is_finished, just_finished])[best]

        # can a running beam still beat the worst finished one? (transformers' early-stop heuristic)
        length = (max_length if early_stopping == "never" and length_penalty > 0.0 else cur_len + 1) - prompt
        best_running = running_scores[0] / (length**length_penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(), torch.tensor(-1.0e9, device=device))
        may_improve = may_improve and bool((best_running > worst_finished).any())
        if not may_improve or (early_stopping is True and bool(is_finished.all())) or bool(ends.all()):
            break
    return finished[0, prompt : prompt + int(finished_lengths[0])].tolist()
