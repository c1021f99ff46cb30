"""lmcore's weights in the Hugging Face Llama and GPT-2 layouts, both ways: lmcore.export.hf
writes a model's folder with them, and `load_hf(folder)` reads one back (lmcore's ModelConfig
keywords and weights, for `init_from: {hf: folder}`). Training imports this module, not the export:
editing how a folder is written retrains nothing.

Layouts. lmcore fuses q, k, v into one `qkv` matrix and SwiGLU's gate and up into one `up`
(gate first); HF keeps them apart. lmcore's RoPE rotates interleaved pairs (x0, x1), (x2, x3),
...; HF Llama rotates halves (x_i, x_{i + D/2}): the rows of q and k are permuted per head so
that both compute the same attention. GPT-2's Conv1D stores (in, out) matrices: transposed.

"""

import json
import os

import torch

from lmcore.export.architectures import HF_GELUS
from lmcore.model.config import ModelConfig
from lmcore.model.families import PRESETS
from lmcore.model.folder import load_safetensors
from lmcore.model.gpt import GPT
from lmcore.train.init import hf_weight_files


def rope_permutation(n_heads, head_dim):
    """Row order that turns lmcore's interleaved rotary pairs into HF's halves, per head:
    HF row h*D + j takes lmcore row h*D + 2j, HF row h*D + D/2 + j takes h*D + 2j + 1."""
    return torch.arange(n_heads * head_dim).view(n_heads, head_dim // 2, 2).transpose(1, 2).reshape(-1)


def llama_weights(w, m):
    """lmcore state dict -> HF Llama names (`invert` runs it the other way, for `load_hf`)."""
    d, H = m["d_model"], m["n_heads"]
    perm = rope_permutation(H, d // H)
    out = {"model.embed_tokens.weight": w["tok_emb.weight"], "model.norm.weight": w["norm_f.weight"]}
    if not m["tie_embeddings"]:
        out["lm_head.weight"] = w["lm_head.weight"]
    for i in range(m["n_layers"]):
        b, h = f"blocks.{i}.", f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = w[b + "norm1.weight"]
        out[h + "post_attention_layernorm.weight"] = w[b + "norm2.weight"]
        for kind in ("weight", "bias") if m["bias"] else ("weight",):
            q, k, v = w[b + f"attn.qkv.{kind}"].split(d)
            out[h + f"self_attn.q_proj.{kind}"], out[h + f"self_attn.k_proj.{kind}"] = q[perm], k[perm]
            out[h + f"self_attn.v_proj.{kind}"] = v
            out[h + f"self_attn.o_proj.{kind}"] = w[b + f"attn.proj.{kind}"]
            if m.get("qk_norm") and kind == "weight":  # Qwen3: per head, in HF's order of the head's rows
                head = rope_permutation(1, d // H)
                out[h + "self_attn.q_norm.weight"] = w[b + "attn.q_norm.weight"][head]
                out[h + "self_attn.k_norm.weight"] = w[b + "attn.k_norm.weight"][head]
            gate, up = w[b + f"mlp.up.{kind}"].split(m["d_ff"])
            out[h + f"mlp.gate_proj.{kind}"], out[h + f"mlp.up_proj.{kind}"] = gate, up
            out[h + f"mlp.down_proj.{kind}"] = w[b + f"mlp.down.{kind}"]
    return out


def gpt2_weights(w, m):
    """lmcore state dict -> HF GPT-2 names; Conv1D keeps (in, out) matrices, the transpose of nn.Linear's."""
    out = {
        "transformer.wte.weight": w["tok_emb.weight"],
        "transformer.wpe.weight": w["pos_emb.weight"],
        "transformer.ln_f.weight": w["norm_f.weight"],
        "transformer.ln_f.bias": w["norm_f.bias"],
    }
    if not m["tie_embeddings"]:
        out["lm_head.weight"] = w["lm_head.weight"]
    for i in range(m["n_layers"]):
        b, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = w[b + ours + ".weight"], w[b + ours + ".bias"]
        for ours, theirs in (
            ("attn.qkv", "attn.c_attn"),
            ("attn.proj", "attn.c_proj"),
            ("mlp.up", "mlp.c_fc"),
            ("mlp.down", "mlp.c_proj"),
        ):
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = w[b + ours + ".weight"].t(), w[b + ours + ".bias"]
    return out


def invert(mapping_fn, m, hf_weights):
    """lmcore weights from HF ones: run the mapping on index tensors, then read each lmcore
    element where the mapping put it (every mapping above is a gather, so this inverts it)."""
    ids, start = {}, 0
    for name, shape in lmcore_shapes(m).items():
        n = torch.Size(shape).numel()
        ids[name] = torch.arange(start, start + n).view(shape)
        start += n
    flat = torch.empty(start)
    for hf_name, index in mapping_fn(ids, m).items():
        if hf_name not in hf_weights:
            raise ValueError(f"tensor {hf_name} is missing from the Hugging Face weights")
        if tuple(hf_weights[hf_name].shape) != tuple(index.shape):
            raise ValueError(
                f"tensor {hf_name}: shape {tuple(hf_weights[hf_name].shape)} in the Hugging Face weights, "
                f"{tuple(index.shape)} for this model entry"
            )
        flat[index.reshape(-1)] = hf_weights[hf_name].reshape(-1).float()
    return {name: flat[index.reshape(-1)].view(index.shape).clone() for name, index in ids.items()}


def lmcore_shapes(m):
    """{name: shape} of lmcore's state dict for a ModelConfig dict, without allocating the model."""
    with torch.device("meta"):
        model = GPT(ModelConfig(**m))
    return {
        k: tuple(v.shape) for k, v in model.state_dict().items() if not (k == "lm_head.weight" and m["tie_embeddings"])
    }


def family_parts(name):
    """The norm, position and MLP of a family's preset."""
    return {k: PRESETS[name][k] for k in ("norm", "position", "mlp")}


def load_hf(folder):
    """(ModelConfig keywords, lmcore state dict) of a Hugging Face Llama-, Qwen3- or GPT-2-layout folder."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        c = json.load(f)
    kind = c.get("model_type")
    if kind in ("llama", "qwen3"):
        if c.get("num_key_value_heads", c["num_attention_heads"]) != c["num_attention_heads"]:
            raise ValueError(
                f"{folder}: grouped-query attention (num_key_value_heads {c['num_key_value_heads']}) has no lmcore "
                "layout"
            )
        m = {
            "d_model": c["hidden_size"],
            "n_layers": c["num_hidden_layers"],
            "n_heads": c["num_attention_heads"],
            "d_ff": c["intermediate_size"],
            "context_length": c["max_position_embeddings"],
            **family_parts("llama"),
            "bias": bool(c.get("attention_bias", False)),
            "tie_embeddings": bool(c.get("tie_word_embeddings", False)),
            "qk_norm": kind == "qwen3",
        }
        if kind == "qwen3" and m["bias"]:
            raise ValueError(f"{folder}: Qwen3 with attention_bias has biases in attention only: no lmcore layout")
        mapping = llama_weights
    elif kind == "gpt2":
        act = c.get("activation_function", "gelu_new")  # transformers' GPT2Config default
        if act not in HF_GELUS:
            raise ValueError(f"{folder}: activation_function {act!r} has no lmcore MLP (known: {', '.join(HF_GELUS)})")
        m = {
            "d_model": c["n_embd"],
            "n_layers": c["n_layer"],
            "n_heads": c["n_head"],
            "d_ff": c.get("n_inner") or 4 * c["n_embd"],
            "context_length": c["n_positions"],
            **family_parts("gpt2"),
            "mlp": HF_GELUS[act],
            "bias": True,
            "tie_embeddings": bool(c.get("tie_word_embeddings", True)),
        }
        mapping = gpt2_weights
    else:
        raise ValueError(f"{folder}: model_type {kind!r} is not one lmcore reads (llama, qwen3, gpt2)")
    m = ModelConfig(**m, vocab_size=c["vocab_size"]).to_dict()  # every option, the rest at its default
    weights = {}
    for path in hf_weight_files(folder):
        if path.endswith(".safetensors"):
            weights.update(load_safetensors(path))
    if m["tie_embeddings"]:
        weights.pop("lm_head.weight", None)
    return m, invert(mapping, m, weights)
