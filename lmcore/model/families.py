"""The model families lmcore names: the keys that choose a block's parts and size its tensors, and
the presets. Config (presets, what a continued model shares) and training (what starting weights
must match) read them. No torch import: the workflow reads it while it plans.
"""

BLOCK_KEYS = ("norm", "position", "mlp", "bias", "tie_embeddings", "qk_norm", "logit_softcap")  # choose the parts
SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "d_ff")  # size the tensors

# `preset:` in a model entry: the family's block keys.
PRESETS = {
    "gpt2": {"norm": "layernorm", "position": "learned", "mlp": "gelu_tanh", "bias": True, "tie_embeddings": True},
    "llama": {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False},
}
