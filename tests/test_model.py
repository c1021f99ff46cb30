"""Tokenizer, model, optimiser schedule, generation, evaluation and checkpoint formats."""
import math
import random

import numpy as np
import pytest
import torch

from lmcore.checkpoint import load_safetensors, save_safetensors
from lmcore.evaluate import bits_per_byte, evaluate_model
from lmcore.generate import generate, next_token_probs, top_p_filter
from lmcore.model import GPT, ModelConfig, count_parameters
from lmcore.optim import lr_at, param_groups
from lmcore import tokenizer as tokenizer_lib

from conftest import fake_document

VARIANTS = [{}, {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False}]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    rng = random.Random(0)
    docs = [{"text": fake_document(rng, 60)} for _ in range(40)]
    path = tmp_path_factory.mktemp("tok") / "spm.model"
    tokenizer_lib.train(docs, path, {"model_type": "bpe", "vocab_size": 400, "character_coverage": 1.0,
                                     "byte_fallback": True, "input_sentence_size": 0})
    return tokenizer_lib.Tokenizer(path)


@pytest.mark.parametrize("text", ["  two leading spaces", "tabs\tand\n\n\nnewlines\n", "trailing  ", "emoji 😀, CJK 漢字, e\u0301",
                                  "<|endoftext|>", "\r\n", ""])
def test_tokenizer_is_lossless(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_tokenizer_is_lossless_on_random_text(tok):
    rng = random.Random(1)
    alphabet = "abc XYZ\n\t  .,;'\"é漢😀\u0301-_"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert tok.decode(tok.encode(text)) == text


def test_lr_schedule():
    assert [lr_at(s, 1.0, 0.1, 100, 1000) for s in (0, 50, 100, 1000, 1500)] == pytest.approx([0.0, 0.5, 1.0, 0.1, 0.1])


def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = GPT(ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, context_length=8))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"])
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert id(model.tok_emb.weight) in no_decay_ids and id(model.pos_emb.weight) in no_decay_ids
    assert len(decay["params"]) + len(no_decay_ids) == len(list(model.parameters()))


@pytest.mark.parametrize("opts", VARIANTS)
def test_model_is_causal_counts_parameters_and_starts_near_uniform(opts):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, context_length=16, **opts)
    model = GPT(cfg).eval()
    x = torch.randint(0, 512, (2, 16))
    y = x.clone()
    y[:, 10:] = torch.randint(0, 512, (2, 6))
    assert torch.allclose(model(x)[0][:, :10], model(y)[0][:, :10], atol=1e-6)
    assert count_parameters(model)["parameters"] == sum(p.numel() for p in model.parameters())
    loss = model(x, torch.randint(0, 512, (2, 16)))[1].item()
    assert abs(loss - math.log(512)) / math.log(512) < 0.05


@pytest.mark.parametrize("opts", VARIANTS)
def test_kv_cache_matches_full_recompute_also_past_the_context(opts):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, context_length=12, **opts))
    prompt = [1, 2, 3]
    cached = list(generate(model, prompt, 30, temperature=0.0, use_cache=True))
    uncached = list(generate(model, prompt, 30, temperature=0.0, use_cache=False))
    assert cached == uncached and len(cached) == 30
    a = list(generate(model, prompt, 20, temperature=1.0, top_k=5, seed=7))
    assert a == list(generate(model, prompt, 20, temperature=1.0, top_k=5, seed=7))
    assert list(generate(model, prompt, 20, temperature=1.0, top_k=1, seed=3)) == cached[:20]


def test_top_p_and_temperature():
    probs = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.05])
    assert top_p_filter(probs, 0.8).tolist() == pytest.approx([0.625, 0.375, 0, 0, 0])
    with pytest.raises(ValueError, match="temperature"):
        next_token_probs(torch.zeros(5), temperature=0.0)


class UniformModel(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.cfg = ModelConfig(vocab_size=vocab, context_length=8)

    def forward(self, x):
        return torch.zeros(*x.shape, self.vocab), None


class ArrayDataset:
    def __init__(self, tokens):
        self.arrays = [np.asarray(tokens)]

    def windows(self, context_length):
        from lmcore.shards import TokenDataset

        return TokenDataset.windows(self, context_length)


def test_uniform_logits_give_perplexity_equal_to_vocabulary_and_hand_computed_bits_per_byte():
    tokens = np.arange(21) % 10
    token_bytes = np.full(10, 2)
    result = evaluate_model(UniformModel(10), ArrayDataset(tokens), token_bytes)
    assert result["tokens"] == 20  # every token but the first is predicted once, the partial window included
    assert result["perplexity"] == pytest.approx(10.0)
    assert result["bits_per_byte"] == pytest.approx(20 * math.log(10) / (math.log(2) * 40))
    assert bits_per_byte(math.log(2) * 8, 8) == pytest.approx(1.0)


def test_safetensors_round_trip(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).bfloat16()}
    save_safetensors(tensors, tmp_path / "m.safetensors", {"format": "pt"})
    back = load_safetensors(tmp_path / "m.safetensors")
    assert all(torch.equal(tensors[k], back[k]) for k in tensors)
