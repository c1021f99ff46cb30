"""Loss, perplexity and bits per byte over a split (lmcore.evaluation.perplexity)."""

import math

import numpy as np
import pytest
import torch

from lmcore.evaluation.perplexity import bits_per_byte, evaluate_model
from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT


class UniformModel(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.cfg = ModelConfig(vocab_size=vocab, context_length=8)

    def forward(self, x):
        return torch.zeros(*x.shape, self.vocab), None


class ArrayDataset:
    def __init__(self, tokens):
        self.tokens = np.asarray(tokens)

    def windows(self, context_length):
        from lmcore.tokens.shards import Stream, stream_windows

        for x, y in stream_windows(Stream([0], [len(self.tokens)]), lambda k: self.tokens, context_length):
            yield "corpus", x, y


def test_uniform_logits_give_perplexity_equal_to_vocabulary_and_hand_computed_bits_per_byte():
    tokens = np.arange(21) % 10
    token_bytes = np.full(10, 2)
    result = evaluate_model(UniformModel(10), ArrayDataset(tokens), token_bytes)
    assert result["tokens"] == 20  # every token but the first is predicted once, the partial window included
    assert result["perplexity"] == pytest.approx(10.0)
    assert result["bits_per_byte"] == pytest.approx(20 * math.log(10) / (math.log(2) * 40))
    assert bits_per_byte(math.log(2) * 8, 8) == pytest.approx(1.0)


def test_evaluation_in_bf16_runs_under_autocast_and_stays_close_to_fp32():
    """A model trained in bf16 is evaluated in bf16 (twice the speed on tensor cores); the loss is summed in fp32."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, context_length=16))
    tokens = np.random.default_rng(0).integers(0, 64, 200)
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    fp32 = evaluate_model(model, ArrayDataset(tokens), np.ones(64, dtype=np.int64))
    assert set(seen) == {torch.float32}
    bf16 = evaluate_model(model, ArrayDataset(tokens), np.ones(64, dtype=np.int64), dtype=torch.bfloat16)
    assert seen[-1] == torch.bfloat16 and bf16["tokens"] == fp32["tokens"] == 199
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=1e-2) and bf16["loss"] != fp32["loss"]
