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


def make_optimizer(model, lr, betas, weight_decay, impl="torch"):
    """AdamW over `param_groups`: torch's (fused on GPUs, foreach elsewhere) or, with impl="lmcore", the one below."""
    groups = param_groups(model, weight_decay)
    if impl == "lmcore":
        return AdamW(groups, lr=lr, betas=betas)
    fast = {"fused": True} if next(model.parameters()).is_cuda else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **fast)


def lr_at(step, max_lr, min_lr, warmup, decay_steps):
    """Linear warm-up to max_lr over the first `warmup` steps (step 0 already takes max_lr / warmup:
    a first step at lr 0 would update nothing), cosine from max_lr to min_lr at decay_steps, then constant."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup) / max(1, decay_steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


class AdamW(torch.optim.Optimizer):
    """Adam with bias correction, then decoupled weight decay p -= lr * wd * p (Loshchilov & Hutter 2019).

    Written out so that the update reads as in the paper; `impl: torch` uses torch's fused or foreach AdamW.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].item()
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)  # m = beta1 m + (1 - beta1) g
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)  # v = beta2 v + (1 - beta2) g^2
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.addcdiv_(m_hat, v_hat.sqrt_().add_(group["eps"]), value=-group["lr"])
