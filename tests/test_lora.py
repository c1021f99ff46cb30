"""LoRA (lmcore.train.lora): an update that starts at zero, trains alone, and is folded into the weights
the model folder holds."""

import pytest
import torch

from helpers import tiny_config, tiny_entry
from lmcore.model.config import ModelConfig
from lmcore.model.folder import load_safetensors
from lmcore.model.gpt import GPT
from lmcore.train.config import TrainJob
from lmcore.train.loop import train
from lmcore.train.lora import add_lora, merge_lora

LORA = {"rank": 4, "alpha": 8, "dropout": 0.0, "targets": ["qkv", "proj"]}


def small_model():
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, context_length=16)).eval()


def test_an_update_starts_at_zero_and_merging_it_keeps_the_models_function():
    model, x = small_model(), torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        before = model(x)[0]
        trainable = add_lora(model, LORA)
        assert torch.equal(model(x)[0], before)  # B = 0: the base model's own function
        assert trainable == 2 * (4 * (32 + 96) + 4 * (32 + 32))  # per block: qkv (32 -> 96) and proj, r (in + out)
        assert [n for n, p in model.named_parameters() if p.requires_grad] == [
            f"blocks.{i}.attn.{layer}.lora_{m}" for i in range(2) for layer in ("qkv", "proj") for m in "AB"
        ]
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()  # an update that changes the function
        adapted = model(x)[0]
        merged = merge_lora(model)
        assert set(merged.state_dict()) == set(small_model().state_dict())  # a plain GPT's parameters
        assert torch.allclose(merged(x)[0], adapted, atol=1e-5) and not torch.allclose(adapted, before)


def test_a_lora_run_trains_the_targets_alone_and_its_folder_holds_the_merged_weights(tmp_path, shards):
    models = tmp_path / "models"
    entry = tiny_entry(max_steps=4, eval_interval=2, dropout=0.0)
    train(TrainJob(entry, *shards, models / "base", tmp_path / "ck1"), log=lambda *a: None)
    lines = []
    child = {**entry, "init_from": {"model": "base"}, "lora": LORA, "lr": 0.01}
    summary = train(TrainJob(child, *shards, models / "tuned", tmp_path / "ck2"), log=lines.append)
    base, tuned = (load_safetensors(models / m / "model.safetensors") for m in ("base", "tuned"))
    assert base.keys() == tuned.keys()
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.endswith(("attn.qkv.weight", "attn.proj.weight")) for k in changed)
    trainable = summary["trainable_parameters"]
    assert trainable < summary["parameters"] / 10
    assert any(line.startswith(f"LoRA rank 4 on qkv, proj: {trainable:,} trainable parameters") for line in lines)
    # AdamW's two fp32 moments for each trainable parameter, and a step count per adapter tensor
    assert 8 * trainable <= summary["optimizer_state_mb"] * 1e6 <= 8 * trainable + 4 * 4 * entry["n_layers"]


def test_lora_with_fsdp_is_a_config_error_before_any_job():
    from helpers import SCHEMA
    from lmcore.config import ConfigError, prepare_config

    config = tiny_config("file:///x", None)
    config["models"]["a"].update(lora={"rank": 4}, parallelism="fsdp", processes_per_node=2)
    with pytest.raises(ConfigError, match=r"models\.a\.lora': LoRA trains in one process or with parallelism: ddp"):
        prepare_config(config, SCHEMA)
    config["models"]["a"].update(parallelism="ddp")
    lora = prepare_config(config, SCHEMA)["models"]["a"]["lora"]
    assert lora == {"rank": 4, "alpha": 16, "dropout": 0.0, "targets": ["qkv", "proj"]}  # the schema's defaults
