"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): a frozen matrix W of a
linear layer learns an update of rank r, W + (alpha / r) B A, with A (r, in) drawn as a linear layer's
weights and B (out, r) zero, so that training starts from the base model's own function. Only A and B
train: the optimizer holds their moments alone. At the end the update is merged into W, so that the
model folder is a plain model (evaluate, sample and the exports read it unchanged).

`targets` name the blocks' linear layers: qkv and proj (attention), up and down (the MLP).
"""

import math

import torch
from torch import nn

TARGETS = ("qkv", "proj", "up", "down")


class LoRALinear(nn.Module):
    """A linear layer with its weights frozen and a trainable low-rank update beside them."""

    def __init__(self, base, rank, alpha, dropout):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear draws its weights, and peft
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.base(x) + self.dropout(x) @ self.lora_A.t() @ self.lora_B.t() * self.scale

    def merged(self):
        """The base layer with the update added to its weights."""
        with torch.no_grad():
            self.base.weight += (self.lora_B @ self.lora_A * self.scale).to(self.base.weight.dtype)
        for p in self.base.parameters():
            p.requires_grad_(True)
        return self.base


def add_lora(model, lora):
    """Freeze `model` (a GPT) and give the `targets` linear layers of its blocks a LoRA update; return the
    number of trainable parameters. `lora`: {rank, alpha, dropout, targets}."""
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.blocks:
        for parent in (block.attn, block.mlp):
            for name in lora["targets"]:
                layer = getattr(parent, name, None)
                if isinstance(layer, nn.Linear):
                    setattr(parent, name, LoRALinear(layer, lora["rank"], lora["alpha"], lora["dropout"]))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model):
    """Fold every LoRA update into its base layer: the model's parameters are a plain GPT's again."""
    for block in model.blocks:
        for parent in (block.attn, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, LoRALinear):
                    setattr(parent, name, child.merged())
    return model
