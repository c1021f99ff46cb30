"""nanoGPT's model and training step as a plain PyTorch reference, written here so that no bench
fetches anything: LayerNorm (biases optional), learned positions, exact GELU, tied head,
F.scaled_dot_product_attention, GPT-2's initialisation, AdamW with nanoGPT's decay groups,
gradient clipping. Also lmcore's step on one micro-batch, and a tokens/s timer for either."""

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmcore.train.loop import train_step


class Block(nn.Module):
    """nanoGPT's block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, d, n_heads, bias):
        super().__init__()
        self.n_heads = n_heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d, bias=bias), nn.LayerNorm(d, bias=bias)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d, bias=bias), nn.Linear(d, d, bias=bias)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d, bias=bias), nn.Linear(4 * d, d, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class Reference(nn.Module):
    def __init__(self, vocab, n_layers, d_model, n_heads, context_length, bias=True):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d_model), nn.Embedding(context_length, d_model)
        self.h = nn.ModuleList(Block(d_model, n_heads, bias) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model, bias=bias)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for (
            name,
            p,
        ) in self.named_parameters():  # nanoGPT: N(0, 0.02), residual projections / sqrt(2 n_layers), zero biases
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias") and "ln_" not in name:
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def reference_optimizer(model, lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1):
    """nanoGPT's configure_optimizers: decay the 2-d tensors, not the rest; foreach AdamW off CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def reference_step(model, opt, x, y):
    loss = model(x, y)[1]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def lmcore_step(model, opt, x, y):
    """What lmcore's training loop does per step (lmcore/train.py), on one micro-batch."""
    mean_loss = train_step(model, [(x, y)], lambda: torch.autocast("cpu", enabled=False))
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    torch.stack([mean_loss, grad_norm.float()]).tolist()
    opt.step()
    opt.zero_grad(set_to_none=True)


def tokens_per_s(step, model, opt, batches):
    start = time.perf_counter()
    for x, y in batches:
        step(model, opt, x, y)
    return sum(x.numel() for x, _ in batches) / (time.perf_counter() - start)
