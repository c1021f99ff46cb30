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


def test_the_memory_check_counts_gradients_and_moments_of_the_trainable_parameters_alone():
    from lmcore.train.runtime import memory_needed_mb

    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, context_length=16)
    full, lora = memory_needed_mb(10**7, 1024, cfg), memory_needed_mb(10**7, 1024, cfg, trainable=10**5)
    assert full - lora == pytest.approx(12 * (10**7 - 10**5) / 1e6)  # 4 bytes of gradient, 8 of moments


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


@pytest.mark.parametrize("preset", [None, "llama"])
def test_peft_loads_the_adapter_onto_the_base_models_hugging_face_folder_with_the_tuned_models_logits(
    tmp_path, shards, preset
):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from lmcore.export.hf import export
    from lmcore.export.peft import export_adapter
    from lmcore.model.families import PRESETS

    models = tmp_path / "models"
    entry = {**tiny_entry(max_steps=3, eval_interval=3, dropout=0.0), **PRESETS.get(preset, {})}
    train(TrainJob(entry, *shards, models / "base", tmp_path / "ck1"), log=lambda *a: None)
    lora = {**LORA, "targets": ["qkv", "proj", "up", "down"]}
    tuned = {**entry, "init_from": {"model": "base"}, "lora": lora, "lr": 0.02, "max_steps": 6}
    train(TrainJob(tuned, *shards, models / "tuned", tmp_path / "ck2"), log=lambda *a: None)
    for name in ("base", "tuned"):
        export(models / name, tmp_path / "hf" / name)
    export_adapter(models / "tuned", models / "base", tmp_path / "adapter", tmp_path / "hf" / "base")
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf" / "base").eval()
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf" / "tuned").eval()
    ids = torch.randint(0, merged.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, ours = base(ids).logits, merged(ids).logits
        adapted = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()  # into `base`, in place
        theirs = adapted(ids).logits
    assert torch.allclose(theirs, ours, atol=1e-4)
    assert not torch.allclose(before, ours, atol=1e-3)  # the update changed the model


def test_the_workflow_plans_an_adapter_for_a_lora_model_over_another_exported_model(tmp_path):
    from helpers import planned_jobs, snakemake, write_config

    config = tiny_config("file:///not-fetched.tar.gz", None)
    config["models"]["c"] = {**config["models"]["a"], "init_from": {"model": "a"}, "lora": {"rank": 2}}
    result = snakemake(tmp_path, "-n", "results/report.html", configfile=write_config(tmp_path / "c.yaml", config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result)["export_lora"] == 1 and "results/lora/c/adapter_config.json" in result.stdout
    assert "results/lora/a/" not in result.stdout and "results/lora/b/" not in result.stdout
