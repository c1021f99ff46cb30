"""A decoder-only transformer (GPT-2 / Llama family), readable top to bottom.

Options: norm (layernorm, rmsnorm), position (learned, rope), mlp (gelu, gelu_tanh, swiglu, relu2),
bias, tie_embeddings, qk_norm, logit_softcap, zero_init, dropout; activation checkpointing for
training. Attention runs through F.scaled_dot_product_attention; generation uses a KV cache that
gives the same logits as a full forward pass.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from lmcore.model.config import LAYER_NORM_EPS, RMS_NORM_EPS, ROPE_THETA
from lmcore.tokens.chat import IGNORE  # a target the loss leaves out


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=RMS_NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # x / sqrt(mean(x^2) + eps) * weight (Zhang & Sennrich 2019), torch's fused kernel
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def segment_positions(segments):
    """(B, T) positions that start at 0 with each sequence of a packed window."""
    T = segments.shape[1]
    index = torch.arange(T, device=segments.device).expand_as(segments)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    # each position minus the index where its sequence began: the running max of the start indices
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - first


def segment_mask(segments):
    """(B, 1, T, T) attention mask of a packed window: a query sees the keys of its own sequence, up to itself."""
    T = segments.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()
    return (segments.unsqueeze(2) == segments.unsqueeze(1)).unsqueeze(1) & causal


def make_norm(cfg):
    return (
        nn.LayerNorm(cfg.d_model, eps=LAYER_NORM_EPS, bias=cfg.bias)
        if cfg.norm == "layernorm"
        else RMSNorm(cfg.d_model)
    )


def rope_tables(head_dim, length, base=ROPE_THETA, device=None):
    """cos and sin of the rotary angles pos * base^(-2i/head_dim) (Su et al. 2021)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angles = torch.outer(torch.arange(length, device=device).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate each pair (x[2j], x[2j+1]) of the head dimension by its angle; x is (B, H, T, D), cos and
    sin (T, D/2). Read as complex numbers x[2j] + i x[2j+1], the pairs take the rotation cos + i sin
    in one product, with no copy but the output (2.3x faster than stacking the rotated halves,
    forward and backward on a CPU). Inductor generates no code for complex numbers, so under
    torch.compile the same rotation is written in real arithmetic, which it fuses."""
    if torch.compiler.is_compiling():
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (B, H, T, D/2), a view in fp32
    return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.residual = True
        # Per head, over head_dim: bounds the attention logits q.k whatever the scale the weights grow to.
        self.q_norm, self.k_norm = (RMSNorm(self.head_dim), RMSNorm(self.head_dim)) if cfg.qk_norm else (None, None)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, rope=None, cache=None, mask=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:  # generation: append this step's keys and values to the cache
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        L = k.shape[2]
        if mask is not None:  # packed sequences: causal within each, nothing across (GPT.forward's segments)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )
        elif L != T:  # queries are the last T of L cached positions: each sees every key up to its own
            mask = torch.ones(T, L, dtype=torch.bool, device=x.device).tril(diagonal=L - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
            )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.swiglu, self.relu2 = cfg.mlp == "swiglu", cfg.mlp == "relu2"
        # GELU exactly, x Phi(x), as torch's and nanoGPT's default; gelu_tanh is GPT-2's tanh approximation
        # (Hendrycks & Gimpel 2016), for GPT-2 checkpoints: 2.1x slower forward+backward on a CPU.
        self.approximate = "tanh" if cfg.mlp == "gelu_tanh" else "none"
        self.up = nn.Linear(cfg.d_model, (2 if self.swiglu else 1) * cfg.d_ff, bias=cfg.bias)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.down.residual = True
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        if self.swiglu:
            gate, up = self.up(x).chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.relu2:  # ReLU(x)^2 (So et al. 2021, Primer): sparse like ReLU, smooth at 0 like GELU
            h = F.relu(self.up(x)).square()
        else:
            h = F.gelu(self.up(x), approximate=self.approximate)
        return self.dropout(self.down(h))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm1, self.attn = make_norm(cfg), CausalSelfAttention(cfg)
        self.norm2, self.mlp = make_norm(cfg), MLP(cfg)
        self.checkpointed = False  # activation checkpointing, set by GPT.checkpoint_activations

    def forward(self, x, rope=None, cache=None, mask=None):
        if self.checkpointed and torch.is_grad_enabled() and cache is None:
            # Keep only x; the backward pass runs the block again for its activations (Chen et al. 2016).
            # Inside the block, so that under FSDP its weights are gathered for the recomputation too.
            return checkpoint(self.compute, x, rope, None, mask, use_reentrant=False)
        return self.compute(x, rope, cache, mask)

    def compute(self, x, rope=None, cache=None, mask=None):
        x = x + self.attn(self.norm1(x), rope, cache, mask)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model) if cfg.position == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        if cfg.position == "rope":
            cos, sin = rope_tables(cfg.d_model // cfg.n_heads, cfg.context_length)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)

    def checkpoint_activations(self, on=True):
        """Recompute each block's activations in the backward pass instead of keeping them."""
        for block in self.blocks:
            block.checkpointed = on

    def _init(self, module):
        # N(0, 0.02) everywhere; residual projections scaled by 1/sqrt(2 n_layers) (GPT-2), or zero with
        # zero_init, so that each block starts as the identity, as does an untied head's output.
        if isinstance(module, nn.Linear):
            residual = getattr(module, "residual", False)
            std = 0.02 / math.sqrt(2 * self.cfg.n_layers) if residual else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            zero_head = module is self.lm_head and not self.cfg.tie_embeddings
            if self.cfg.zero_init and (residual or zero_head):
                nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None, segments=None, caches=None, start=0):
        """Logits for every position; with targets, also the mean cross-entropy (nats per token) over the
        positions whose target is not IGNORE (a loss mask: SFT's user and system tokens).

        `caches` (one dict per layer) and `start` (position of idx[:, 0]) serve generation. `segments` (B, T),
        for windows packed with several sequences (conversations): a sequence's number at each position,
        non-decreasing along a row. Each sequence then sees only itself, from position 0, as if alone.
        """
        B, T = idx.shape
        if start + T > self.cfg.context_length:
            raise ValueError(f"sequence of {start + T} tokens is longer than context_length {self.cfg.context_length}")
        positions, mask = torch.arange(start, start + T, device=idx.device), None
        if segments is not None:
            positions, mask = segment_positions(segments), segment_mask(segments)
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        rope = None
        if self.cfg.position == "rope" and segments is None:  # (T, D/2) tables, broadcast over batch and heads
            rope = (self.rope_cos[start : start + T], self.rope_sin[start : start + T])
        elif self.cfg.position == "rope":  # (B, 1, T, D/2): a position per sequence, broadcast over the heads
            rope = (self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1))
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, None if caches is None else caches[i], mask)
        logits = self.lm_head(self.norm_f(x))
        if self.cfg.logit_softcap:  # smoothly bounded to (-c, c)
            c = self.cfg.logit_softcap
            logits = c * torch.tanh(logits / c)
        if targets is None:
            return logits, None
        nats = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
        )
        return logits, nats / (targets != IGNORE).sum().clamp(min=1)  # a batch with no target left has loss 0


def count_parameters(model):
    """Total parameters (shared weights once) and non-embedding parameters (no token or position embeddings)."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.tok_emb.weight.numel() + (model.pos_emb.weight.numel() if model.pos_emb is not None else 0)
    return {"parameters": total, "non_embedding_parameters": total - embedding}


def flops_per_token(cfg, non_embedding_parameters):
    """Training FLOPs per token: 6N for the matrices plus 12 L d T for attention (Kaplan et al. 2020; PaLM)."""
    return 6 * non_embedding_parameters + 12 * cfg.n_layers * cfg.d_model * cfg.context_length
