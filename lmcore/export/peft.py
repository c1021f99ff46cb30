"""A LoRA model's update as a PEFT adapter folder (`adapter_config.json`, `adapter_model.safetensors`) over
its base model's Hugging Face folder: `peft.PeftModel.from_pretrained(base, folder)` computes the model
that lmcore trained.

The model folder holds the merged weights W + (alpha / rank) B A (lmcore.train.lora). The update of each
target is their difference with the base model's weights, a matrix of rank `rank` at most: laid out as
the Hugging Face layers of the base (lmcore.export.layouts, which splits lmcore's fused qkv and gate|up
and permutes q and k for RoPE), each is factored again by its SVD, exact but for rounding.
"""

import os

import torch

from lmcore.export.architectures import architecture
from lmcore.export.layouts import gpt2_weights, llama_weights
from lmcore.io import write_json
from lmcore.model.folder import read_config, read_weights, save_safetensors

# The Hugging Face layers each lmcore target becomes, in a block of each layout.
HF_TARGETS = {
    "llama": {
        "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        "proj": ("self_attn.o_proj",),
        "up": ("mlp.gate_proj", "mlp.up_proj"),
        "down": ("mlp.down_proj",),
    },
    "gpt2": {"qkv": ("attn.c_attn",), "proj": ("attn.c_proj",), "up": ("mlp.c_fc",), "down": ("mlp.c_proj",)},
}
BLOCK = {"llama": "model.layers.{i}.", "gpt2": "transformer.h.{i}."}


def factors(delta, rank, scale):
    """(A, B) of rank `rank` with scale B A = delta (out, in), from delta's SVD, split evenly between them."""
    U, S, Vh = torch.linalg.svd(delta.double(), full_matrices=False)
    root = S[:rank].sqrt()
    return (root[:, None] * Vh[:rank] / scale).float(), (U[:, :rank] * root).float()


def export_adapter(model_dir, base_dir, out_dir, base_hf):
    """Write the PEFT adapter of the LoRA model in `model_dir` over the model in `base_dir` (its init_from,
    whose Hugging Face folder is `base_hf`, recorded as base_model_name_or_path)."""
    config = read_config(model_dir)
    m, lora = config["model"], config["train"].get("lora")
    if not lora:
        raise ValueError(f"{model_dir}: not a LoRA model (its entry sets no lora)")
    arch, reason = architecture(m)
    if arch is None:
        raise ValueError(f"{model_dir}: no Hugging Face layout, so no adapter: {reason}")
    layout = "gpt2" if arch == "gpt2" else "llama"
    tuned, base = read_weights(model_dir, config), read_weights(base_dir)
    if tuned.keys() != base.keys() or any(tuned[k].shape != base[k].shape for k in tuned):
        raise ValueError(f"{model_dir} and {base_dir}: not the same shape, so one is not the other's base")
    to_hf = gpt2_weights if layout == "gpt2" else llama_weights
    delta = to_hf({k: tuned[k].double() - base[k].double() for k in tuned}, m)
    scale, tensors, modules = lora["alpha"] / lora["rank"], {}, []
    for i in range(m["n_layers"]):
        for target in lora["targets"]:
            for layer in HF_TARGETS[layout][target]:
                name = BLOCK[layout].format(i=i) + layer
                d = delta[name + ".weight"]
                A, B = factors(d.t() if layout == "gpt2" else d, lora["rank"], scale)  # Conv1D holds (in, out)
                tensors[f"base_model.model.{name}.lora_A.weight"] = A.contiguous()
                tensors[f"base_model.model.{name}.lora_B.weight"] = B.contiguous()
                modules.append(name)
    os.makedirs(out_dir, exist_ok=True)
    save_safetensors(tensors, os.path.join(out_dir, "adapter_model.safetensors"), {"format": "pt"})
    write_json(
        os.path.join(out_dir, "adapter_config.json"),
        {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": os.fspath(base_hf),
            "r": lora["rank"],
            "lora_alpha": lora["alpha"],
            "lora_dropout": lora["dropout"],
            "target_modules": modules,  # full names: GPT-2's attn.c_proj and mlp.c_proj share the last one
            "bias": "none",
            "fan_in_fan_out": layout == "gpt2",  # Conv1D's (in, out) weights
            "inference_mode": True,
        },
    )
    return modules
