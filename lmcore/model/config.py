"""A model's options: the fields of a `models.<name>` entry that shape the network, torch-free (the
config checks and the training settings read the field names while the workflow plans)."""

import math
from dataclasses import asdict, dataclass

from lmcore.schema import schema_defaults

RMS_NORM_EPS, LAYER_NORM_EPS, ROPE_THETA = 1e-6, 1e-5, 10000.0  # LayerNorm's eps is torch's default


@dataclass
@schema_defaults
class ModelConfig:
    """The network's options. A field without a value here takes the schema's default for its key
    (lmcore.schema); the shape has none there (a model entry must give it), these are for code and tests."""

    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int | None
    context_length: int
    norm: str
    position: str
    mlp: str
    bias: bool
    tie_embeddings: bool
    qk_norm: bool  # RMSNorm of each head's queries and keys before RoPE (Qwen3, OLMo-2)
    logit_softcap: float | None  # logits = c tanh(logits / c) (Gemma 2)
    zero_init: bool  # residual-branch output projections and an untied head start at zero (modded-nanogpt)
    dropout: float

    def __post_init__(self):
        if self.d_ff is None:
            # SwiGLU keeps the parameter count of a 4x GELU MLP with 2/3 of its width (Shazeer 2020).
            self.d_ff = 64 * math.ceil(8 * self.d_model / 3 / 64) if self.mlp == "swiglu" else 4 * self.d_model

    def to_dict(self):
        return asdict(self)
