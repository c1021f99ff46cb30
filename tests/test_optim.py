"""The optimizers, the learning-rate schedules and a training step (lmcore.train.optim, the loop's train_step)."""

import pytest
import torch

from lmcore.model.config import ModelConfig
from lmcore.model.gpt import GPT
from lmcore.train.config import TrainConfig
from lmcore.train.optim import lr_at, param_groups


def test_warm_up_moves_the_weights_from_the_first_step_then_the_cosine_reaches_min_lr():
    assert [
        lr_at(s, TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=100), 1000) for s in (0, 49, 99, 100, 1000, 1500)
    ] == pytest.approx([0.01, 0.5, 1.0, 1.0, 0.1, 0.1])


def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = GPT(ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, context_length=8))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"])
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert id(model.tok_emb.weight) in no_decay_ids and id(model.pos_emb.weight) in no_decay_ids
    assert len(decay["params"]) + len(no_decay_ids) == len(list(model.parameters()))


def test_one_batch_overfits():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, d_model=64, n_layers=2, n_heads=4, context_length=16))
    x, y = torch.randint(0, 64, (4, 16)), torch.randint(0, 64, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_lmcore_adamw_agrees_with_torch_adamw():
    from lmcore.train.optim import make_optimizer

    models = []
    for impl in ("lmcore", "torch"):
        torch.manual_seed(0)
        model = GPT(ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, context_length=8))
        opt = make_optimizer(model, TrainConfig(lr=1e-3, optimizer_impl=impl))
        data = torch.Generator().manual_seed(1)
        for _ in range(10):
            x = torch.randint(0, 50, (4, 8), generator=data)
            opt.zero_grad()
            model(x, x.roll(-1, 1))[1].backward()
            opt.step()
        models.append(model)
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.allclose(a, b, atol=1e-4)


def test_four_micro_batches_of_two_give_the_gradient_of_one_batch_of_eight():
    import contextlib

    from lmcore.train.loop import train_step

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50, d_model=32, n_layers=1, n_heads=4, context_length=8))
    x, y = torch.randint(0, 50, (8, 8)), torch.randint(0, 50, (8, 8))
    grads = []
    for batches in ([(x, y)], [(x[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)]):
        model.zero_grad()
        loss = train_step(model, batches, contextlib.nullcontext)
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1]))


def test_wsd_holds_the_peak_then_falls_in_a_straight_line_over_the_cooldown():
    lrs = [
        lr_at(s, TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=10, schedule="wsd", cooldown=0.2), 100)
        for s in range(0, 101)
    ]
    assert lrs[9] == 1.0 and lrs[10:80] == [1.0] * 70  # warm-up, then stable until step 80
    assert lrs[90] == pytest.approx(0.55) and lrs[100] == 0.1  # halfway down the cool-down, then min_lr


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    from lmcore.train.optim import make_optimizer

    model = GPT(ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, context_length=8, tie_embeddings=False,
                            norm="rmsnorm", position="rope", mlp="swiglu", bias=False))  # fmt: skip
    opt = make_optimizer(model, TrainConfig(lr=1e-3, optimizer="muon", muon_lr=0.02))
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    in_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[i] for i in in_muon) == sorted(
        n for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2
    )
    assert {names[i] for i in in_adamw} >= {"tok_emb.weight", "lm_head.weight", "norm_f.weight"}
    assert len(in_muon) + len(in_adamw) == len(list(model.parameters()))
    assert {g["peak_lr"] for g in opt.param_groups} == {0.02, 1e-3}
