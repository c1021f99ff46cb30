"""The model families lmcore names, and what they are in Hugging Face's terms: the one table that
config (presets, what a continued model shares), training (what starting weights must match) and
the HF mapping read. No torch import: the workflow reads it while it plans.
"""

BLOCK_KEYS = ("norm", "position", "mlp", "bias", "tie_embeddings", "qk_norm", "logit_softcap")  # choose the parts
SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "d_ff")  # size the tensors

# `preset:` in a model entry: the family's block keys.
PRESETS = {
    "gpt2": {"norm": "layernorm", "position": "learned", "mlp": "gelu_tanh", "bias": True, "tie_embeddings": True},
    "llama": {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False},
}

# lmcore's GELU MLPs and the `activation_function` of a GPT-2 config that computes the same:
# gelu_new and gelu_pytorch_tanh are both the tanh approximation.
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new"}
HF_GELUS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}

# Keys that change how a run is watched or fits in memory, not its maths: changing one neither retrains a
# model (the train rule's params leave them out) nor starts a run afresh (lmcore.resume.run_key).
NOT_THE_MATHS = ("activation_checkpointing", "loggers", "wandb_project")

# Options newer than some saved models' config.json, and what those models computed.
OPTION_DEFAULTS = {"qk_norm": False, "logit_softcap": None}

# What each Hugging Face architecture computes, as the lmcore options it takes (any tie_embeddings):
# the first that takes all of a model's options is its export. Qwen3 is Llama's layout with an RMSNorm
# of each head's queries and keys before RoPE, and no MLP biases.
LLAMA = {"norm": {"rmsnorm"}, "position": {"rope"}, "mlp": {"swiglu"}}
HF_ARCHITECTURES = {
    "llama": {**LLAMA, "bias": {False, True}, "qk_norm": {False}, "logit_softcap": {None}},
    "qwen3": {**LLAMA, "bias": {False}, "qk_norm": {True}, "logit_softcap": {None}},
    "gpt2": {
        "norm": {"layernorm"},
        "position": {"learned"},
        "mlp": set(GPT2_ACTIVATIONS),
        "bias": {True},
        "qk_norm": {False},
        "logit_softcap": {None},
    },  # fmt: skip
}
HF_NAMES = {"llama": "Llama", "qwen3": "Qwen3", "gpt2": "GPT-2"}

# What an export writes (lmcore.hf_export.export), one Hugging Face folder per model.
HF_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
)


def option(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


def architecture(m):
    """('llama' | 'qwen3' | 'gpt2', None), or (None, why not) for a ModelConfig dict `m`."""
    m = {**OPTION_DEFAULTS, **m}
    takes = {name: sum(m[k] in values for k, values in accepts.items()) for name, accepts in HF_ARCHITECTURES.items()}
    nearest = max(takes, key=takes.get)  # the first of the closest
    accepts = HF_ARCHITECTURES[nearest]
    if takes[nearest] == len(accepts):
        return nearest, None
    off = ", ".join(f"{k}: {option(m[k])}" for k, values in accepts.items() if m[k] not in values)
    what = ", ".join(
        f"{k} " + " or ".join(sorted(map(option, v))) for k, v in accepts.items() if len(v) == 1 or k == "mlp"
    )
    return (
        None,
        f"{off}: no Hugging Face architecture has this mix; the nearest, {HF_NAMES[nearest]} ({what}), differs in it",
    )
