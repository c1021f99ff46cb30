"""What lmcore's models are in Hugging Face's terms: the one table of which architecture computes
which options, the GELU names, and the files of an exported folder. No torch import: the workflow
reads it while it plans (which models have an HF folder and a GGUF file).

Every field of ModelConfig is either free (sizes, and what training alone reads), listed by an
architecture with the values it takes, or must be at its default: an option added to the model
and to no table here stops the export, naming it, rather than being exported as something else.
"""

from dataclasses import MISSING, fields

from lmcore.model.config import ModelConfig

# Any value: the sizes of the tensors, and what only training reads (how weights start, dropout).
FREE = ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "d_ff", "zero_init", "dropout")

# lmcore's GELU MLPs and the `activation_function` of a GPT-2 config that computes the same:
# gelu_new and gelu_pytorch_tanh are both the tanh approximation.
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new"}
HF_GELUS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}

# What each Hugging Face architecture computes, as the lmcore options it takes: the first that takes all
# of a model's options is its export. Qwen3 is Llama's layout with an RMSNorm of each head's queries and
# keys before RoPE, and no MLP biases.
LLAMA = {"norm": {"rmsnorm"}, "position": {"rope"}, "mlp": {"swiglu"}, "tie_embeddings": {False, True}}
HF_ARCHITECTURES = {
    "llama": {**LLAMA, "bias": {False, True}, "qk_norm": {False}, "logit_softcap": {None}},
    "qwen3": {**LLAMA, "bias": {False}, "qk_norm": {True}, "logit_softcap": {None}},
    "gpt2": {
        "norm": {"layernorm"},
        "position": {"learned"},
        "mlp": set(GPT2_ACTIVATIONS),
        "bias": {True},
        "tie_embeddings": {False, True},
        "qk_norm": {False},
        "logit_softcap": {None},
    },  # fmt: skip
}
HF_NAMES = {"llama": "Llama", "qwen3": "Qwen3", "gpt2": "GPT-2"}

# What an export writes (lmcore.export.hf.export), one Hugging Face folder per model.
HF_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
)

DEFAULTS = {f.name: f.default for f in fields(ModelConfig) if f.default is not MISSING}


def option(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


def differs(m, accepts):
    """The options of `m` (a full set of ModelConfig fields) that an architecture's `accepts` does not take."""
    return [k for k in DEFAULTS if k not in FREE and m[k] not in accepts.get(k, {DEFAULTS[k]})]


def architecture(m):
    """('llama' | 'qwen3' | 'gpt2', None), or (None, why not) for a model entry or ModelConfig dict `m`
    (keys of neither ModelConfig are not the network's and are passed over)."""
    m = {**DEFAULTS, **{k: v for k, v in m.items() if k in DEFAULTS}}
    off = {name: differs(m, accepts) for name, accepts in HF_ARCHITECTURES.items()}
    nearest = min(off, key=lambda name: len(off[name]))  # the first of the closest
    if not off[nearest]:
        return nearest, None
    accepts = HF_ARCHITECTURES[nearest]
    named = ", ".join(f"{k}: {option(m[k])}" for k in off[nearest])
    what = ", ".join(
        f"{k} " + " or ".join(sorted(map(option, v))) for k, v in accepts.items() if len(v) == 1 or k == "mlp"
    )
    return (
        None,
        f"{named}: no Hugging Face architecture has this mix; the nearest, {HF_NAMES[nearest]} ({what}), differs in it",
    )
