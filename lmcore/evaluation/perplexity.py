"""Test-set evaluation: loss, perplexity and bits per byte over every token of a split.

loss        = token-weighted mean negative log-likelihood in nats
perplexity  = exp(loss)
bits/byte   = total nats / (ln 2 x UTF-8 bytes of the decoded target tokens),
              which compares models across tokenizers.
A unigram model counted on the train split is scored on the same tokens as a baseline. Where the split
holds conversations, "answers" gives the same figures on the assistant's tokens only, each with its whole
conversation before it: what SFT trains, for a base model and a fine-tuned one alike.
"""

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from lmcore.model.folder import load_model, read_config
from lmcore.tokens.chat import IGNORE, chat_ids
from lmcore.tokens.shards import TokenDataset, conversation_sources, pair_sources
from lmcore.train.runtime import autocast, autocast_dtype, pick_device, use_tf32

MAX_EXP_ARG = math.log(sys.float_info.max)  # about 709.8


def bits_per_byte(total_nats, total_bytes):
    return total_nats / (math.log(2) * total_bytes) if total_bytes else float("nan")


def perplexity(loss):
    """exp(loss), infinite rather than an OverflowError for a loss past what a float holds."""
    return math.inf if loss > MAX_EXP_ARG else math.exp(loss)


def split_figures(total_nats, n_tokens, n_bytes):
    """Loss, perplexity and bits per byte; NaN where there is no token to score."""
    loss = total_nats / n_tokens if n_tokens else math.nan
    return {
        "loss": loss,
        "perplexity": perplexity(loss),
        "bits_per_byte": bits_per_byte(total_nats, n_bytes),
        "tokens": n_tokens,
        "bytes": int(n_bytes),
    }


@torch.no_grad()
def score_windows(model, windows, token_bytes, batch_size=16, device="cpu", dtype=None):
    """Sum the NLL of every target but IGNORE of `windows` ((source, x, y, segments or None)); the figures
    over all of them, and under "sources" each source's own. `dtype` (bf16) runs the forward pass under
    autocast, as training did; the loss is summed in fp32."""
    model.eval()
    device = torch.device(device)
    totals = {}  # source -> [nats, tokens, bytes]
    batch = []

    def flush():
        lengths = {}  # windows differ in length only at the end of a stream: batch equal lengths together
        for window in batch:
            lengths.setdefault(len(window[1]), []).append(window)
        for group in lengths.values():
            x, y = (torch.from_numpy(np.stack([g[i] for g in group])).to(device) for i in (1, 2))
            packed = (
                {"segments": torch.from_numpy(np.stack([g[3] for g in group])).to(device)}
                if group[0][3] is not None
                else {}
            )
            with autocast(device, dtype):
                logits = model(x, **packed)[0]
            nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="none")
            for window, n in zip(group, nats.view(y.shape).sum(1).tolist()):  # (B,) per window
                totals[window[0]][0] += n
        batch.clear()

    for source, x, y, segments in windows:
        scored = y[y != IGNORE]
        total = totals.setdefault(source, [0.0, 0, 0])
        total[1] += len(scored)
        total[2] += int(token_bytes[scored].sum())
        batch.append((source, x, y, segments))
        if len(batch) == batch_size:
            flush()
    flush()
    overall = split_figures(*(sum(t[i] for t in totals.values()) for i in range(3)))
    return {**overall, "sources": {source: split_figures(*t) for source, t in sorted(totals.items())}}


def evaluate_model(model, dataset, token_bytes, batch_size=16, device="cpu", dtype=None):
    """Every token of a split in fixed, non-overlapping windows of the model's context."""
    windows = ((source, x, y, None) for source, x, y in dataset.windows(model.cfg.context_length))
    return score_windows(model, windows, token_bytes, batch_size, device, dtype)


def evaluate_answers(model, dataset, token_bytes, batch_size=16, device="cpu", dtype=None):
    """The answers of a split's conversations (TokenDataset.answer_windows: packed whole, attention kept
    within each); the bytes are those of the answer tokens."""
    windows = dataset.answer_windows(model.cfg.context_length)
    return score_windows(model, windows, token_bytes, batch_size, device, dtype)


def unigram_baseline(train, test, token_bytes, vocab_size):
    """Score test tokens with add-one smoothed unigram frequencies counted on the train split."""
    counts = np.ones(vocab_size, dtype=np.float64)
    for _, a, _ in train.shards():
        counts += np.bincount(a, minlength=vocab_size)
    nll = -np.log(counts / counts.sum())
    total_nats, n_tokens, n_bytes = 0.0, 0, 0
    for _, a, first in test.shards():  # the tokens `windows` predicts: all but each source's first
        targets = np.asarray(a[1:] if first else a)
        total_nats += float(nll[targets].sum())
        n_tokens += len(targets)
        n_bytes += int(token_bytes[targets].sum())
    return split_figures(total_nats, n_tokens, n_bytes)


def evaluate_folder(folder, manifest_path, log=print):
    """A model folder's figures on the test and validation splits and the unigram baseline (results/eval/<model>.json),
    on the device and in the precision the model trained in (a GPU where the job has one)."""
    train = read_config(folder)["train"]
    device = pick_device(train.get("device", "auto"))
    dtype = autocast_dtype(train.get("precision", "auto"), device)
    use_tf32(device)
    model, tok = load_model(folder, device)
    data = {s: TokenDataset(manifest_path, s, tok.fingerprint) for s in ("train", "validation", "test")}
    token_bytes = tok.token_bytes()
    result = {
        s: evaluate_model(model, data[s], token_bytes, device=device, dtype=dtype) for s in ("test", "validation")
    }
    result["baseline"] = unigram_baseline(data["train"], data["test"], token_bytes, tok.vocab_size)
    pairs = pair_sources(manifest_path)
    if pairs:  # held-out preference pairs: how often the model prefers the chosen answer
        from lmcore.train.dpo import PreferencePairs, preference_accuracy

        data = PreferencePairs(manifest_path, "test", tok.fingerprint, dict.fromkeys(pairs, 1), chat_ids(tok))
        result["test"]["preferences"] = preference_accuracy(model, data, model.cfg.context_length, device, dtype)
    chats = conversation_sources(manifest_path)
    if chats:
        answers = TokenDataset(manifest_path, "test", tok.fingerprint, {s: 1 for s in chats}, chat_ids(tok))
        result["test"]["answers"] = evaluate_answers(model, answers, token_bytes, device=device, dtype=dtype)
    result["tokenizer_fingerprint"] = tok.fingerprint
    log(f"{device.type}, {dtype or torch.float32}: {result}")
    return result


class DocumentScorer:
    """Bits per byte of each document under a model folder's model (CCNet's perplexity filter): its first
    `max_tokens` tokens after an end-of-text, in windows of the model's context packed several to a row,
    each window attending to itself only (GPT.forward's segments)."""

    def __init__(self, folder, max_tokens, batch_size=16):
        self.model, self.tok = load_model(folder)
        self.token_bytes = self.tok.token_bytes()
        self.context = self.model.cfg.context_length
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    def chunks(self, texts):
        """(document index, ids of context + 1 tokens at most) covering each document's tokens once."""
        for i, ids in enumerate(self.tok.encode_arrays(texts)):
            ids = np.concatenate([[self.tok.eot_id], ids[: self.max_tokens]]).astype(np.int64)
            for start in range(0, len(ids) - 1, self.context):
                yield i, ids[start : start + self.context + 1]

    def rows(self, texts):
        """Rows of (x, y, segments, owner): chunks packed greedily, padding's targets IGNORE."""
        row = []
        for chunk in self.chunks(texts):
            if row and sum(len(c) - 1 for _, c in row) + len(chunk[1]) - 1 > self.context:
                yield self.pack(row)
                row = []
            row.append(chunk)
        if row:
            yield self.pack(row)

    def pack(self, row):
        T = self.context
        x, y = np.zeros(T, dtype=np.int64), np.full(T, IGNORE, dtype=np.int64)
        segments, owner = np.full(T, len(row), dtype=np.int64), np.full(T, -1, dtype=np.int64)
        at = 0
        for k, (doc, ids) in enumerate(row):
            n = len(ids) - 1
            x[at : at + n], y[at : at + n] = ids[:-1], ids[1:]
            segments[at : at + n], owner[at : at + n] = k, doc
            at += n
        return x, y, segments, owner

    @torch.no_grad()
    def __call__(self, texts):
        nats, n_bytes = np.zeros(len(texts)), np.zeros(len(texts))
        rows = list(self.rows(texts))
        for start in range(0, len(rows), self.batch_size):
            x, y, segments, owner = (np.stack(column) for column in zip(*rows[start : start + self.batch_size]))
            logits = self.model(torch.from_numpy(x), segments=torch.from_numpy(segments))[0]
            token_nats = F.cross_entropy(
                logits.float().flatten(0, 1), torch.from_numpy(y).flatten(), ignore_index=IGNORE, reduction="none"
            ).numpy()  # (B * T,): 0 where the target is IGNORE
            scored = owner.ravel() >= 0
            np.add.at(nats, owner.ravel()[scored], token_nats[scored])
            np.add.at(n_bytes, owner.ravel()[scored], self.token_bytes[y.ravel()[scored]])
        with np.errstate(divide="ignore", invalid="ignore"):
            return (nats / (math.log(2) * n_bytes)).astype(np.float32)  # NaN where a document has no byte
