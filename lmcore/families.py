"""The model families lmcore names and what they are in Hugging Face's terms (no torch import:
the workflow reads it while it plans).

A family is a preset of the keys that choose a block's parts; `architecture` says which Hugging
Face architecture computes the same as an option mix, or why none does.
"""

PRESETS = {
    "gpt2": {"norm": "layernorm", "position": "learned", "mlp": "gelu_tanh", "bias": True, "tie_embeddings": True},
    "llama": {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False},
}

# What an export writes (lmcore.hf_export.export), one Hugging Face folder per model.
HF_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "tokenizer.model")

# lmcore's GELU MLPs and the `activation_function` of a GPT-2 config that computes the same:
# gelu_new and gelu_pytorch_tanh are both the tanh approximation.
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new"}
HF_GELUS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def architecture(m):
    """('llama' | 'gpt2', None), or (None, why not) for a ModelConfig dict `m`."""
    if m["norm"] == "rmsnorm" and m["position"] == "rope" and m["mlp"] == "swiglu":
        return "llama", None
    if m["norm"] == "layernorm" and m["position"] == "learned" and m["mlp"] in GPT2_ACTIVATIONS:
        return ("gpt2", None) if m["bias"] else (None, "bias: false with the GPT-2 shape (GPT-2's layers always have biases)")
    llama = {"norm": {"rmsnorm"}, "position": {"rope"}, "mlp": {"swiglu"}}
    gpt2 = {"norm": {"layernorm"}, "position": {"learned"}, "mlp": set(GPT2_ACTIVATIONS)}
    closer = llama if sum(m[k] in v for k, v in llama.items()) >= sum(m[k] in v for k, v in gpt2.items()) else gpt2
    off = ", ".join(f"{k}: {m[k]}" for k, v in closer.items() if m[k] not in v)
    name = "Llama (rmsnorm, rope, swiglu)" if closer is llama else "GPT-2 (layernorm, learned, gelu or gelu_tanh)"
    return None, f"{off}: no Hugging Face architecture has this mix; the nearest, {name}, differs in it"
