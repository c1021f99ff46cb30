"""Models that leave the pipeline and come back: lmcore <-> the Hugging Face Llama and GPT-2 layouts.

`export(model_dir, out_dir)` writes a folder that `transformers` loads offline with
`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` (and that llama.cpp's
convert_hf_to_gguf.py and vLLM read): lmcore.families.HF_FILES, for the option mixes an HF architecture has
(lmcore.families.architecture says which, and why not). `load_hf(folder)` is the inverse: lmcore's
ModelConfig keywords and weights from such a folder, for `init_from: {hf: folder}`.

Layouts. lmcore fuses q, k, v into one `qkv` matrix and SwiGLU's gate and up into one `up`
(gate first); HF keeps them apart. lmcore's RoPE rotates interleaved pairs (x0, x1), (x2, x3),
...; HF Llama rotates halves (x_i, x_{i + D/2}): the rows of q and k are permuted per head so
that both compute the same attention. GPT-2's Conv1D stores (in, out) matrices: transposed.

The tokenizer is a `tokenizers` serialisation of the SentencePiece model that gives the same
ids: the same pieces and merges (or unigram scores), byte fallback, lmcore's escape of U+2581,
spaces as U+2581, SentencePiece's split before each run of U+2581, and the user-defined pieces
(the newline) as added tokens. One exception: a private-use U+E000 directly followed by "s"
decodes as U+2581 (lmcore's escape character; SentencePiece never sees it otherwise).
"""
import json
import os

import torch

from lmcore.checkpoint import load_safetensors, save_safetensors
from lmcore.families import GPT2_ACTIVATIONS, HF_GELUS, architecture
from lmcore.io import atomic_open, copy_file, hf_weight_files, write_json
from lmcore.model import GPT, LAYER_NORM_EPS, RMS_NORM_EPS, ROPE_THETA, ModelConfig
from lmcore.model_folder import read_config, read_weights
from lmcore.tokenizer import ESCAPE, SPACE_SYMBOL, Tokenizer, read_proto


def rope_permutation(n_heads, head_dim):
    """Row order that turns lmcore's interleaved rotary pairs into HF's halves, per head:
    HF row h*D + j takes lmcore row h*D + 2j, HF row h*D + D/2 + j takes h*D + 2j + 1."""
    return torch.arange(n_heads * head_dim).view(n_heads, head_dim // 2, 2).transpose(1, 2).reshape(-1)


def llama_config(m, special):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": m["vocab_size"], "hidden_size": m["d_model"],
        "intermediate_size": m["d_ff"], "num_hidden_layers": m["n_layers"], "num_attention_heads": m["n_heads"],
        "num_key_value_heads": m["n_heads"], "head_dim": m["d_model"] // m["n_heads"], "hidden_act": "silu",
        "max_position_embeddings": m["context_length"], "rms_norm_eps": RMS_NORM_EPS, "tie_word_embeddings": m["tie_embeddings"],
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA}, "attention_bias": m["bias"], "mlp_bias": m["bias"],
        "attention_dropout": m["dropout"], "dtype": "float32", **special,
    }


def gpt2_config(m, special):
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": m["vocab_size"], "n_embd": m["d_model"],
        "n_inner": m["d_ff"], "n_layer": m["n_layers"], "n_head": m["n_heads"], "n_positions": m["context_length"],
        "activation_function": GPT2_ACTIVATIONS[m["mlp"]],
        "layer_norm_epsilon": LAYER_NORM_EPS, "tie_word_embeddings": m["tie_embeddings"], "resid_pdrop": m["dropout"],
        "embd_pdrop": m["dropout"], "attn_pdrop": m["dropout"], "dtype": "float32", **special,
    }


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
            gate, up = w[b + f"mlp.up.{kind}"].split(m["d_ff"])
            out[h + f"mlp.gate_proj.{kind}"], out[h + f"mlp.up_proj.{kind}"] = gate, up
            out[h + f"mlp.down_proj.{kind}"] = w[b + f"mlp.down.{kind}"]
    return out


def gpt2_weights(w, m):
    """lmcore state dict -> HF GPT-2 names; Conv1D keeps (in, out) matrices, the transpose of nn.Linear's."""
    out = {"transformer.wte.weight": w["tok_emb.weight"], "transformer.wpe.weight": w["pos_emb.weight"],
           "transformer.ln_f.weight": w["norm_f.weight"], "transformer.ln_f.bias": w["norm_f.bias"]}
    if not m["tie_embeddings"]:
        out["lm_head.weight"] = w["lm_head.weight"]
    for i in range(m["n_layers"]):
        b, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = w[b + ours + ".weight"], w[b + ours + ".bias"]
        for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj")):
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
            raise ValueError(f"tensor {hf_name}: shape {tuple(hf_weights[hf_name].shape)} in the Hugging Face weights, "
                             f"{tuple(index.shape)} for this model entry")
        flat[index.reshape(-1)] = hf_weights[hf_name].reshape(-1).float()
    return {name: flat[index.reshape(-1)].view(index.shape).clone() for name, index in ids.items()}


def lmcore_shapes(m):
    """{name: shape} of lmcore's state dict for a ModelConfig dict, without allocating the model."""
    with torch.device("meta"):
        model = GPT(ModelConfig(**m))
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not (k == "lm_head.weight" and m["tie_embeddings"])}


def tokenizer_json(spm_path):
    """The `tokenizers` serialisation of a SentencePiece model, giving lmcore's ids (see the module docstring)."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE, Unigram

    proto = read_proto(spm_path)
    pieces = [(p.piece, p.score, p.type) for p in proto.pieces]
    T = sentencepiece_model_pb2.ModelProto.SentencePiece
    unk = next(i for i, (_, _, t) in enumerate(pieces) if t == T.UNKNOWN)
    kind = proto.trainer_spec.model_type
    if kind == proto.trainer_spec.UNIGRAM:
        model = Unigram([(p, s) for p, s, _ in pieces], unk_id=unk, byte_fallback=True)
    elif kind in (proto.trainer_spec.BPE, proto.trainer_spec.CHAR):
        vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
        # BPE merges: each learned piece from any two pieces it splits into, ranked by the piece's score (SentencePiece's merge order)
        learned = sorted((i for i, (_, _, t) in enumerate(pieces) if t == T.NORMAL), key=lambda i: -pieces[i][1])
        merges = [] if kind == proto.trainer_spec.CHAR else [
            (p[:k], p[k:]) for i in learned for p in [pieces[i][0]] for k in range(1, len(p)) if p[:k] in vocab and p[k:] in vocab]
        model = BPE(vocab, merges, unk_token=pieces[unk][0], byte_fallback=True, fuse_unk=True)
    else:
        raise ValueError(f"{spm_path}: SentencePiece model_type word has no Hugging Face tokenizer that gives the same ids")
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence([normalizers.Replace(ESCAPE, ESCAPE * 2), normalizers.Replace(SPACE_SYMBOL, ESCAPE + "s"),
                                           normalizers.Replace(" ", SPACE_SYMBOL)])
    # SentencePiece starts a new word at each run of U+2581 (allow_whitespace_only_pieces)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(f"{SPACE_SYMBOL}+[^{SPACE_SYMBOL}]*|[^{SPACE_SYMBOL}]+"), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE_SYMBOL, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Replace(ESCAPE * 2, ESCAPE), decoders.Replace(ESCAPE + "s", SPACE_SYMBOL)])
    tok.add_tokens([AddedToken(p, normalized=False, special=False) for p, _, t in pieces if t == T.USER_DEFINED])
    tok.add_special_tokens([AddedToken(p, normalized=False, special=True) for p, _, t in pieces if t in (T.CONTROL, T.UNKNOWN)])
    return tok.to_str()


def special_ids(tokenizer):
    sp = tokenizer.sp
    return {"bos_token_id": sp.bos_id() if sp.bos_id() >= 0 else None, "eos_token_id": sp.eos_id(),
            "pad_token_id": sp.pad_id() if sp.pad_id() >= 0 else None}


def export(model_dir, out_dir):
    """Write lmcore.families.HF_FILES into `out_dir` for the model in `model_dir`; return the architecture name.
    ValueError says which option has no HF architecture (the pipeline exports only models that have one)."""
    config = read_config(model_dir)
    m = config["model"]
    arch, reason = architecture(m)
    if arch is None:
        raise ValueError(f"{model_dir}: not exported: {reason}")
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = Tokenizer(os.path.join(model_dir, "tokenizer.model"))
    special = special_ids(tokenizer)
    weights = read_weights(model_dir, config)
    hf = (llama_weights if arch == "llama" else gpt2_weights)(weights, m)
    save_safetensors(hf, os.path.join(out_dir, "model.safetensors"), {"format": "pt"})
    write_json(os.path.join(out_dir, "config.json"), (llama_config if arch == "llama" else gpt2_config)(m, special))
    write_json(os.path.join(out_dir, "generation_config.json"), special)
    sp = tokenizer.sp
    with atomic_open(os.path.join(out_dir, "tokenizer.json")) as f:
        f.write(tokenizer_json(tokenizer.path))
    names = {"bos_token": sp.bos_id(), "eos_token": sp.eos_id(), "unk_token": sp.unk_id(), "pad_token": sp.pad_id()}
    write_json(os.path.join(out_dir, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": m["context_length"], "clean_up_tokenization_spaces": False,
        **{k: sp.id_to_piece(i) for k, i in names.items() if i >= 0}})
    copy_file(tokenizer.path, os.path.join(out_dir, "tokenizer.model"))  # the SentencePiece model, for tools that read it (llama.cpp)
    return arch


def load_hf(folder):
    """(ModelConfig keywords, lmcore state dict) of a Hugging Face Llama- or GPT-2-layout folder."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        c = json.load(f)
    kind = c.get("model_type")
    if kind == "llama":
        if c.get("num_key_value_heads", c["num_attention_heads"]) != c["num_attention_heads"]:
            raise ValueError(f"{folder}: grouped-query attention (num_key_value_heads {c['num_key_value_heads']}) has no lmcore layout")
        m = {"d_model": c["hidden_size"], "n_layers": c["num_hidden_layers"], "n_heads": c["num_attention_heads"],
             "d_ff": c["intermediate_size"], "context_length": c["max_position_embeddings"], "norm": "rmsnorm", "position": "rope",
             "mlp": "swiglu", "bias": bool(c.get("attention_bias", False)), "tie_embeddings": bool(c.get("tie_word_embeddings", False))}
        mapping = llama_weights
    elif kind == "gpt2":
        act = c.get("activation_function", "gelu_new")  # transformers' GPT2Config default
        if act not in HF_GELUS:
            raise ValueError(f"{folder}: activation_function {act!r} has no lmcore MLP (known: {', '.join(HF_GELUS)})")
        m = {"d_model": c["n_embd"], "n_layers": c["n_layer"], "n_heads": c["n_head"], "d_ff": c.get("n_inner") or 4 * c["n_embd"],
             "context_length": c["n_positions"], "norm": "layernorm", "position": "learned", "mlp": HF_GELUS[act], "bias": True,
             "tie_embeddings": bool(c.get("tie_word_embeddings", True))}
        mapping = gpt2_weights
    else:
        raise ValueError(f"{folder}: model_type {kind!r} is not one lmcore reads (llama, gpt2)")
    m["vocab_size"], m["dropout"] = c["vocab_size"], 0.0
    weights = {}
    for path in hf_weight_files(folder):
        if path.endswith(".safetensors"):
            weights.update(load_safetensors(path))
    if m["tie_embeddings"]:
        weights.pop("lm_head.weight", None)
    return m, invert(mapping, m, weights)
