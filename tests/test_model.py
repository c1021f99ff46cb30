"""The network (lmcore.model.gpt), its options, generation and the safetensors format."""

import math

import pytest
import torch

from lmcore.model.config import ModelConfig
from lmcore.model.folder import load_safetensors, save_safetensors
from lmcore.model.generate import generate, next_token_probs, top_p_filter
from lmcore.model.gpt import GPT, count_parameters

VARIANTS = [{}, {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False}]
# Parameters of VARIANTS at vocab 512, d_model 64, 2 layers, context 16, counted by hand: (all, non-embedding).
# GPT-2 shape, per block: 2 layernorms 2 x 128, qkv 64 x 192 + 192, proj 64 x 64 + 64, up 64 x 256 + 256,
# down 256 x 64 + 64 = 49,984; final norm 128; token embedding 512 x 64 (tied with the head); positions 16 x 64.
# Llama shape, per block: 2 rmsnorms 2 x 64, qkv 64 x 192, proj 64 x 64, SwiGLU d_ff 192 (8/3 x 64 rounded up
# to 64): up (gate|up) 64 x 384, down 192 x 64 = 53,376; final norm 64; token embedding and an
# untied head 512 x 64 each.
HAND_COUNTS = [
    (2 * 49_984 + 128 + 32_768 + 1_024, 2 * 49_984 + 128),
    (2 * 53_376 + 64 + 2 * 32_768, 2 * 53_376 + 64 + 32_768),
]


@pytest.mark.parametrize("opts, counts", zip(VARIANTS, HAND_COUNTS))
def test_model_is_causal_counts_parameters_and_starts_near_uniform(opts, counts):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=4, context_length=16, **opts)
    model = GPT(cfg).eval()
    x = torch.randint(0, 512, (2, 16))
    y = x.clone()
    y[:, 10:] = torch.randint(0, 512, (2, 6))
    assert torch.allclose(model(x)[0][:, :10], model(y)[0][:, :10], atol=1e-6)
    assert count_parameters(model) == {"parameters": counts[0], "non_embedding_parameters": counts[1]}
    loss = model(x, torch.randint(0, 512, (2, 16)))[1].item()
    assert abs(loss - math.log(512)) / math.log(512) < 0.05


# The options of the modern recipe together: every one of them, with the KV cache.
RECIPE = {"norm": "rmsnorm", "position": "rope", "mlp": "relu2", "bias": False, "tie_embeddings": False,
          "qk_norm": True, "logit_softcap": 15.0}  # fmt: skip


@pytest.mark.parametrize("opts", [*VARIANTS, RECIPE])
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


def test_safetensors_round_trip_readable_by_the_safetensors_library(tmp_path):
    from safetensors import safe_open

    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).bfloat16(), "d": torch.randn(4, 3).t()}
    save_safetensors(tensors, tmp_path / "m.safetensors", {"format": "pt"})
    back = load_safetensors(tmp_path / "m.safetensors")
    assert all(torch.equal(tensors[k], back[k]) for k in tensors)
    with safe_open(tmp_path / "m.safetensors", framework="pt") as f:  # the library itself, not lmcore's reader
        assert f.metadata() == {"format": "pt"} and sorted(f.keys()) == ["a", "b", "c", "d"]
        assert torch.equal(f.get_tensor("d"), tensors["d"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_sdpa_equals_explicit_masked_softmax_attention():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=10, d_model=32, n_layers=1, n_heads=4, context_length=8)
    attn = GPT(cfg).blocks[0].attn
    x = torch.randn(2, 8, 32)
    q, k, v = attn.qkv(x).view(2, 8, 3, 4, 8).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)
    scores = scores.masked_fill(torch.ones(8, 8, dtype=torch.bool).triu(1), float("-inf"))
    expected = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 8, 32))
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_rope_as_complex_numbers_equals_the_real_arithmetic_that_compile_sees(monkeypatch):
    from lmcore.model.gpt import apply_rope, rope_tables

    x = torch.randn(2, 3, 5, 8)
    cos, sin = rope_tables(8, 5)
    eager = apply_rope(x, cos, sin)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert torch.allclose(eager, apply_rope(x, cos, sin), atol=1e-6)
    angle = torch.atan2(sin[3, 1], cos[3, 1])  # the pair (x[2], x[3]) at position 3, rotated by hand
    a, b = x[..., 3, 2], x[..., 3, 3]
    assert torch.allclose(eager[..., 3, 2], a * angle.cos() - b * angle.sin(), atol=1e-6)
    assert torch.allclose(eager[..., 3, 3], a * angle.sin() + b * angle.cos(), atol=1e-6)


@pytest.mark.parametrize("options", VARIANTS)
def test_activation_checkpointing_gives_the_same_loss_and_gradients_and_keeps_fewer_tensors(options):
    """Recomputing each block in the backward pass (dropout on: its random masks are replayed) changes no
    gradient; what autograd keeps for the backward pass shrinks to the blocks' inputs."""
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=3, n_heads=2, context_length=16, dropout=0.2, **options)
    x, y = torch.randint(0, 64, (2, 3, 16))

    def run(checkpointed):
        torch.manual_seed(0)
        model = GPT(cfg)
        model.checkpoint_activations(checkpointed)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = model(x, y)[1]
        loss.backward()
        return loss.item(), {n: p.grad for n, p in model.named_parameters()}, sum(saved)

    loss, grads, kept = run(False)
    loss_ac, grads_ac, kept_ac = run(True)
    assert loss_ac == loss
    assert all(torch.allclose(grads[n], grads_ac[n], atol=1e-6) for n in grads)
    assert kept_ac < kept / 2


def small(**options):
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, context_length=16, **options)).eval()


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys():
    x = torch.randint(0, 64, (2, 16))
    for qk_norm, same in ((True, True), (False, False)):
        model = small(qk_norm=qk_norm, norm="rmsnorm", position="rope")
        before = model(x)[0]
        with torch.no_grad():
            for block in model.blocks:
                block.attn.qkv.weight[: 2 * 32] *= 10.0  # the rows that make q and k
        assert torch.allclose(model(x)[0], before, atol=1e-4) == same


def test_relu2_squares_the_relu_of_the_up_projection():
    mlp = small(mlp="relu2").blocks[0].mlp
    x = torch.randn(3, 32)
    assert torch.allclose(mlp(x), mlp.down(torch.relu(mlp.up(x)) ** 2))
    assert mlp.up.out_features == 4 * 32  # not gated: GELU's width


def test_logit_softcap_bounds_the_logits_and_leaves_small_ones_nearly_alone():
    model = small(logit_softcap=5.0, tie_embeddings=False)
    x = torch.randint(0, 64, (2, 16))
    small_logits = model(x)[0]
    with torch.no_grad():
        model.lm_head.weight.mul_(1000.0)
    assert model(x)[0].abs().max() <= 5.0
    assert torch.allclose(small_logits, small(tie_embeddings=False)(x)[0], atol=1e-2)


def test_zero_init_starts_every_block_as_the_identity_and_an_untied_head_at_uniform():
    model = small(zero_init=True, tie_embeddings=False)
    for block in model.blocks:
        assert not block.attn.proj.weight.any() and not block.mlp.down.weight.any()
        assert block.attn.qkv.weight.any() and block.mlp.up.weight.any()
    x = torch.randint(0, 64, (2, 16))
    assert model(x, x)[1].item() == pytest.approx(math.log(64))
    tied = small(zero_init=True)
    assert tied.tok_emb.weight.any()  # a tied head is the embedding: never zeroed


@pytest.mark.parametrize("opts", VARIANTS)
def test_sequences_packed_in_one_window_see_only_themselves_from_position_0(opts):
    """Packing conversations into a window (SFT): each gives the logits it gives alone, and the loss leaves
    out the positions whose target is IGNORE."""
    from lmcore.model.gpt import IGNORE

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, context_length=16, **opts)).eval()
    a, b, c = torch.randint(0, 64, (1, 5)), torch.randint(0, 64, (1, 7)), torch.randint(0, 64, (1, 4))
    packed = torch.cat([a, b, c], dim=1)
    segments = torch.tensor([[0] * 5 + [1] * 7 + [2] * 4])
    with torch.no_grad():
        logits = model(packed, segments=segments)[0]
        alone = torch.cat([model(x)[0] for x in (a, b, c)], dim=1)
        assert torch.allclose(logits, alone, atol=1e-5)
        targets = torch.randint(0, 64, (1, 16))
        kept = torch.rand(1, 16) < 0.5
        loss = model(packed, torch.where(kept, targets, IGNORE), segments=segments)[1]
        nll = torch.nn.functional.cross_entropy(logits[kept], targets[kept])
        assert loss.item() == pytest.approx(nll.item(), rel=1e-5)
    model.checkpoint_activations(True)  # the mask reaches a block run again in the backward pass
    again = model(packed, torch.where(kept, targets, IGNORE), segments=segments)[1]
    again.backward()
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)
