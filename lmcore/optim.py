"""AdamW with decoupled weight decay (Loshchilov & Hutter 2019) and the warm-up + cosine schedule."""
import math

import torch


def param_groups(model, weight_decay):
    """Decay the matrices of linear layers only: no decay on norms, biases and embeddings."""
    decay, no_decay, seen = [], [], set()
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for p in model.parameters():  # parameters() yields a tied weight once
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model, cfg):
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    return torch.optim.AdamW(param_groups(model, cfg["weight_decay"]), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), **fused)


def lr_at(step, max_lr, min_lr, warmup, decay_steps):
    """Linear warm-up from 0 while step < warmup, cosine from max_lr to min_lr at decay_steps, then constant."""
    if step < warmup:
        return max_lr * step / warmup
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup) / max(1, decay_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
