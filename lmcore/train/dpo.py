"""Direct preference optimisation (Rafailov et al. 2023), as TRL's DPOTrainer does it (sigmoid loss):

    loss = -log sigmoid(beta x [(log pi(y_w | x) - log ref(y_w | x)) - (log pi(y_l | x) - log ref(y_l | x))])

where log pi(y | x) sums the answer's token log-probabilities (the last assistant message and its <|end|>) given
the conversation before it, y_w the chosen answer and y_l the rejected one. The reference model is frozen, in
evaluation mode: its log-probabilities of each pair are computed once before the first step and held as two floats
per pair, which is exact (they are the numbers a reference held beside the policy would give at every step) and
costs one forward pass over the pairs instead of a second model's memory through training. Logged as TRL names
them: rewards/chosen = beta x (log pi - log ref) of the chosen answers, rewards/rejected, rewards/accuracies (the
share of pairs whose chosen reward is the higher) and rewards/margins (their mean difference).

A pair is two conversations in a row in the shards (lmcore.tokens.shards.encode_documents): the chosen, then the
same with the rejected answer. A conversation longer than the context is read on its first context_length + 1
tokens, for the policy and the reference alike.
"""

import numpy as np
import torch
import torch.nn.functional as F

from lmcore.model.folder import other_model
from lmcore.tokens.chat import IGNORE, MARKERS, loss_mask
from lmcore.tokens.shards import TokenDataset
from lmcore.train.runtime import autocast


def last_answer_mask(ids, marker):
    """(rows, T) True on the last assistant message's tokens and its <|end|> of each row."""
    at = np.broadcast_to(np.arange(ids.shape[-1]), ids.shape)
    last_open = np.where(ids == marker[MARKERS["assistant"]], at, -1).max(axis=-1, keepdims=True)
    return loss_mask(ids, marker) & (at > last_open)


class PreferencePairs(TokenDataset):
    """The preference pairs of a split: `sample_batch` gives (x, y, reference) of random pairs, x and y the chosen
    conversations' rows then the rejected ones' (2 x pairs, context_length), y IGNORE but on the last answers,
    `reference` (pairs, 2) the reference model's log-probabilities of each pair's chosen and rejected answer."""

    def __init__(self, manifest_path, split, fingerprint, sources, answers):
        super().__init__(manifest_path, split, fingerprint, sources, answers)
        self.reference = None  # per stream, (pairs, 2): set by `score_reference`

    def pair_starts(self, stream):
        """(pairs, 3): where each pair's chosen and rejected conversations start, and where the rejected one ends."""
        starts = np.append(self.conversation_starts(stream), stream.total)
        if (len(starts) - 1) % 2:
            raise ValueError(f"the {self.split} split of a preference source holds an odd number of conversations")
        return np.stack([starts[:-1:2], starts[1::2], starts[2::2]], axis=1)

    def rows(self, picks, context_length):
        """x, y of the given (stream, pair) picks: the chosen rows, then the rejected ones, as wide as the longest
        (context_length at most; a row's end is end-of-text ids with IGNORE targets)."""
        read = []
        for j in (0, 1):  # the chosen conversations, then the rejected ones
            for stream, k in picks:
                s = self.streams[stream]
                start, end = self.pair_starts(s)[k, j : j + 2]
                read.append(s.read(self.array, int(start), min(int(end - start), context_length + 1)))
        ids = np.full((len(read), max(map(len, read))), self.eot_id, dtype=np.int64)
        for i, row in enumerate(read):
            ids[i, : len(row)] = row
        return ids[:, :-1], np.where(last_answer_mask(ids, self.answers)[:, 1:], ids[:, 1:], IGNORE)

    def sample_batch(self, rng, batch_size, context_length, rows=None):
        stream = self.draw_streams(rng, batch_size)
        pick = rng.integers(0, [len(self.pair_starts(self.streams[s])) for s in stream])
        mine = list(range(batch_size)[rows] if rows is not None else range(batch_size))
        x, y = self.rows([(stream[i], pick[i]) for i in mine], context_length)
        reference = np.stack([self.reference[stream[i]][pick[i]] for i in mine]).astype(np.float32)
        return x, y, reference

    def all_pairs(self, context_length, batch_size):
        """(stream, x, y) of every pair of the split, in order, `batch_size` pairs at a time."""
        for stream in range(len(self.streams)):
            n = len(self.pair_starts(self.streams[stream]))
            for start in range(0, n, batch_size):
                yield (
                    stream,
                    *self.rows([(stream, k) for k in range(start, min(start + batch_size, n))], context_length),
                )


def answer_logps(model, x, y):
    """(rows,) summed log-probabilities of each row's targets but IGNORE, and (rows,) how many there are."""
    logits = model(x)[0].float()
    scored = y != IGNORE
    logps = torch.gather(F.log_softmax(logits, dim=-1), 2, y.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (logps * scored).sum(1), scored.sum(1)


@torch.no_grad()
def pair_logps(model, data, context_length, device, dtype=None, batch_size=16):
    """Per stream of `data`, (pairs, 2) summed log-probabilities of each pair's chosen and rejected answers, and
    (pairs, 2) their numbers of tokens, under `model` in evaluation mode (under autocast to `dtype` where given)."""
    model.eval()
    logps = [[] for _ in data.streams]
    counts = [[] for _ in data.streams]
    for stream, x, y in data.all_pairs(context_length, batch_size):
        with autocast(torch.device(device), dtype):
            total, n = answer_logps(model, torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        half = len(x) // 2
        logps[stream].append(torch.stack([total[:half], total[half:]], 1).cpu().numpy())
        counts[stream].append(torch.stack([n[:half], n[half:]], 1).cpu().numpy())
    join = lambda parts: np.concatenate(parts) if parts else np.zeros((0, 2))  # noqa: E731
    return [join(p) for p in logps], [join(c) for c in counts]


def score_reference(dpo, models_dir, datasets, tokenizer, context_length, device, dtype, log):
    """Set each dataset's `reference`: the reference model's log-probabilities of its pairs, computed once."""
    reference = other_model(models_dir, dpo["reference"]["model"], tokenizer, device, "dpo.reference")
    for data in datasets:
        data.reference, _ = pair_logps(reference, data, context_length, device, dtype)
        log(f"reference {dpo['reference']['model']}: {sum(map(len, data.reference)):,} {data.split} pairs scored")


class DPO(torch.nn.Module):
    """The policy's training objective: forward(x, y, reference) returns (None, the DPO loss) and keeps the sums
    of TRL's metrics until `metrics` is read."""

    def __init__(self, policy, beta):
        super().__init__()
        self.policy, self.beta = policy, beta
        self.sums, self.pairs = 0, 0  # a (4,) tensor on the policy's device once a batch came: no copy per step

    def forward(self, x, y, reference):
        logps, _ = answer_logps(self.policy, x, y)
        n = len(reference)
        chosen = self.beta * (logps[:n] - reference[:, 0])  # the implicit rewards
        rejected = self.beta * (logps[n:] - reference[:, 1])
        loss = -F.logsigmoid(chosen - rejected).mean()
        with torch.no_grad():
            step = torch.stack(
                [chosen.sum(), rejected.sum(), (chosen > rejected).float().sum(), (chosen - rejected).sum()]
            )
            self.sums, self.pairs = self.sums + step.float(), self.pairs + n
        return None, loss

    def metrics(self, prefix=""):
        """TRL's metrics, the mean over the pairs since the last call."""
        names = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
        out = {f"{prefix}{k}": v / self.pairs for k, v in zip(names, self.sums.tolist())} if self.pairs else {}
        self.sums, self.pairs = 0, 0
        return out


def preference_accuracy(model, data, context_length, device, dtype=None):
    """How often the model prefers the chosen answer, by its total log-probability and per token, over every pair
    of `data` (held-out pairs): what the report puts side by side for base, SFT and DPO models."""
    logps, counts = pair_logps(model, data, context_length, device, dtype)
    logps, counts = np.concatenate(logps), np.concatenate(counts)
    per_token = logps / np.maximum(counts, 1)
    return {
        "pairs": len(logps),
        "accuracy": float((logps[:, 0] > logps[:, 1]).mean()) if len(logps) else None,
        "accuracy_per_token": float((per_token[:, 0] > per_token[:, 1]).mean()) if len(logps) else None,
        "margin": float((logps[:, 0] - logps[:, 1]).mean()) if len(logps) else None,
    }
