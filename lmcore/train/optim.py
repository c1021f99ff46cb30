"""The optimizers and learning-rate schedules: AdamW with decoupled weight decay (Loshchilov & Hutter
2019), or Muon (Jordan et al. 2024) for the blocks' matrices with AdamW for the rest; warm-up, then
cosine or warm-up-stable-decay (WSD: constant, then a linear cool-down; Hu et al. 2024, MiniCPM)."""

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
    """The optimizer a TrainConfig names. AdamW over `param_groups`: torch's (fused on GPUs, foreach elsewhere)
    or, with optimizer_impl "lmcore", the one below. optimizer "muon": torch.optim.Muon on the 2-D weights
    inside the blocks at `muon_lr`, AdamW at `lr` on
    embeddings, head, norms and biases (Muon orthogonalises a matrix's update; an embedding's rows are
    looked up one by one, and the head is better trained by Adam: Jordan et al.). Each group keeps its
    peak learning rate as "peak_lr", which the schedule scales."""
    lr, betas, weight_decay = cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay
    groups = param_groups(model, weight_decay)
    fast = {"fused": True} if next(model.parameters()).is_cuda else {"foreach": True}
    if cfg.optimizer == "muon":
        hidden = {id(p) for block in model.blocks for p in block.parameters() if p.dim() == 2 and p.requires_grad}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in hidden]} for g in groups]
        matrices = [p for p in model.parameters() if id(p) in hidden]
        muon = torch.optim.Muon(
            [{"params": matrices, "peak_lr": cfg.muon_lr}],
            lr=cfg.muon_lr, weight_decay=weight_decay, momentum=cfg.muon_momentum, adjust_lr_fn="original",
        )  # fmt: skip
        adamw = torch.optim.AdamW([{**g, "peak_lr": lr} for g in groups], lr=lr, betas=betas, **fast)
        return Optimizers(muon, adamw)
    groups = [{**g, "peak_lr": lr} for g in groups]
    if cfg.optimizer_impl == "lmcore":
        return AdamW(groups, lr=lr, betas=betas)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **fast)


class Optimizers:
    """Several optimizers over disjoint parameters, stepped, saved and restored as one."""

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [group for opt in self.optimizers for group in opt.param_groups]

    def step(self):
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none=True):
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {str(i): opt.state_dict() for i, opt in enumerate(self.optimizers)}

    def load_state_dict(self, state):
        for i, opt in enumerate(self.optimizers):
            opt.load_state_dict(state[str(i)])


def lr_at(step, cfg, max_steps):
    """The schedule of a TrainConfig at `step`. Linear warm-up to lr over the first warmup_steps (step 0
    already takes lr / warmup_steps: a first step at lr 0 would update nothing), then to min_lr at
    decay_steps (max_steps when unset) and constant after it: cosine, or with "wsd" constant at lr until
    the last `cooldown` fraction of decay_steps and a straight line down over it (a long linear cool-down:
    Hägele et al. 2024)."""
    max_lr, min_lr, warmup, schedule = cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.schedule
    decay_steps = cfg.decay_steps or max_steps
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= decay_steps:
        return min_lr
    if schedule == "wsd":
        start = max(warmup, decay_steps - round(cfg.cooldown * decay_steps))
        if step < start:
            return max_lr
        return max_lr + (step - start) / max(1, decay_steps - start) * (min_lr - max_lr)
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
