"""Models as GGUF files, the format llama.cpp (and Ollama, LM Studio, llama-cpp-python) runs:
`export(model_dir, path, dtype)` writes one with the `gguf` package's GGUFWriter, straight from
lmcore's weights, under llama.cpp's names for its llama, qwen3 and gpt2 graphs: one for each
Hugging Face architecture (lmcore.model.families.architecture says which, and why not), named alike.
llama.cpp's gpt2 graph takes GELU's tanh approximation, through a half-precision table, for
`mlp: gelu` too: on a trained model that moved the logits as little as its float arithmetic does
elsewhere (the README's figures).

Layouts. llama.cpp's llama graph rotates interleaved pairs (x0, x1), (x2, x3), ..., as lmcore
does: q and k go as they are (llama.cpp's converter undoes HF's permutation to get there). Its
qwen3 graph rotates halves, as HF does: q, k and their per-head norms take lmcore.export.layouts's row order.
GPT-2's fused qkv matrix is llama.cpp's attn_qkv. Shapes are torch's (out, in); the GGUF header
lists them innermost first.

The tokenizer is the SentencePiece model's pieces, scores and types under llama.cpp's `llama`
(SPM) tokenizer, which merges pieces by score as SentencePiece's BPE does: with no space put in
front of the text (lmcore's models are trained with no dummy prefix) and no BOS added, it gives
lmcore's ids. Two exceptions: a text holding U+2581 or U+E000 (lmcore escapes them, llama.cpp
does not), and unigram models, which llama.cpp's SPM tokenizer does not segment as SentencePiece
does (the ids can differ; the weights and logits of given ids do not).
"""

import os

import gguf
import numpy as np
from sentencepiece import sentencepiece_model_pb2

from lmcore.export.architectures import architecture
from lmcore.export.layouts import rope_permutation
from lmcore.io import atomic_path
from lmcore.model.config import LAYER_NORM_EPS, RMS_NORM_EPS, ROPE_THETA
from lmcore.model.folder import read_config, read_weights
from lmcore.tokens.chat import CHAT_TEMPLATE, is_chat_model
from lmcore.tokens.tokenizer import read_proto

# `gguf: {dtype}` and the file type the GGUF header states for it
FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}


def encode(array, dtype):
    """(data, GGML type) of one tensor, as llama.cpp's converter stores it for a file of `dtype`: vectors
    (norms, biases) in f32; matrices in f16, or in Q8_0 (blocks of 32 weights with one f16 scale each),
    or in f16 where a row does not split into such blocks."""
    F32, F16, Q8_0 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.Q8_0
    if dtype == "f32" or array.ndim == 1:
        return array, F32
    if dtype == "q8_0" and array.shape[-1] % gguf.GGML_QUANT_SIZES[Q8_0][0] == 0:
        return gguf.quants.quantize(array, Q8_0), Q8_0
    return array.astype(np.float16), F16


def llama_tensors(w, m, arch):
    """lmcore state dict -> llama.cpp's llama or qwen3 names (qwen3 rotates halves: HF's row order)."""
    d, H, hd = m["d_model"], m["n_heads"], m["d_model"] // m["n_heads"]
    rows = rope_permutation(H, hd) if arch == "qwen3" else slice(None)
    head = rope_permutation(1, hd) if arch == "qwen3" else slice(None)
    out = {"token_embd.weight": w["tok_emb.weight"], "output_norm.weight": w["norm_f.weight"]}
    if not m["tie_embeddings"]:
        out["output.weight"] = w["lm_head.weight"]
    for i in range(m["n_layers"]):
        b, g = f"blocks.{i}.", f"blk.{i}."
        out[g + "attn_norm.weight"] = w[b + "norm1.weight"]
        out[g + "ffn_norm.weight"] = w[b + "norm2.weight"]
        if m.get("qk_norm"):
            out[g + "attn_q_norm.weight"] = w[b + "attn.q_norm.weight"][head]
            out[g + "attn_k_norm.weight"] = w[b + "attn.k_norm.weight"][head]
        for kind in ("weight", "bias") if m["bias"] else ("weight",):
            q, k, v = w[b + f"attn.qkv.{kind}"].split(d)
            out[g + f"attn_q.{kind}"], out[g + f"attn_k.{kind}"], out[g + f"attn_v.{kind}"] = q[rows], k[rows], v
            out[g + f"attn_output.{kind}"] = w[b + f"attn.proj.{kind}"]
            gate, up = w[b + f"mlp.up.{kind}"].split(m["d_ff"])
            out[g + f"ffn_gate.{kind}"], out[g + f"ffn_up.{kind}"] = gate, up
            out[g + f"ffn_down.{kind}"] = w[b + f"mlp.down.{kind}"]
    return out


def gpt2_tensors(w, m):
    """lmcore state dict -> llama.cpp's gpt2 names: the same matrices, qkv fused as in lmcore."""
    out = {"token_embd.weight": w["tok_emb.weight"], "position_embd.weight": w["pos_emb.weight"]}
    out["output_norm.weight"], out["output_norm.bias"] = w["norm_f.weight"], w["norm_f.bias"]
    if not m["tie_embeddings"]:
        out["output.weight"] = w["lm_head.weight"]
    parts = {"norm1": "attn_norm", "norm2": "ffn_norm", "attn.qkv": "attn_qkv", "attn.proj": "attn_output"}
    parts |= {"mlp.up": "ffn_up", "mlp.down": "ffn_down"}
    for i in range(m["n_layers"]):
        for ours, theirs in parts.items():
            for kind in ("weight", "bias"):
                out[f"blk.{i}.{theirs}.{kind}"] = w[f"blocks.{i}.{ours}.{kind}"]
    return out


def add_tokenizer(writer, proto):
    """A SentencePiece ModelProto as llama.cpp's `llama` tokenizer, set to give lmcore's ids."""
    T = sentencepiece_model_pb2.ModelProto.SentencePiece
    types = {
        T.NORMAL: gguf.TokenType.NORMAL,
        T.UNKNOWN: gguf.TokenType.UNKNOWN,
        T.CONTROL: gguf.TokenType.CONTROL,
        T.USER_DEFINED: gguf.TokenType.USER_DEFINED,  # the newline: matched before any merge
        T.BYTE: gguf.TokenType.BYTE,
        T.UNUSED: gguf.TokenType.UNUSED,
    }
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([p.piece.encode("utf-8") for p in proto.pieces])
    writer.add_token_scores([p.score for p in proto.pieces])
    writer.add_token_types([types[p.type] for p in proto.pieces])
    spec = proto.trainer_spec
    for add, i in ((writer.add_unk_token_id, spec.unk_id), (writer.add_bos_token_id, spec.bos_id)):
        if i >= 0:
            add(i)
    writer.add_eos_token_id(spec.eos_id)  # lmcore's end-of-text: generation stops there
    if spec.pad_id >= 0:
        writer.add_pad_token_id(spec.pad_id)
    writer.add_add_bos_token(False)  # lmcore's models never saw a BOS
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)  # trained with add_dummy_prefix false: no space before the text
    writer.add_remove_extra_whitespaces(False)


def export(model_dir, path, dtype="f32", name=None, log=print):
    """Write `path` (a .gguf file) for the model in `model_dir`; return llama.cpp's architecture name.
    dtype f16 or q8_0 stores the matrices in half precision or 8 bits (see `encode`), as llama.cpp's
    converter does. ValueError names the option no llama.cpp graph computes."""
    if dtype not in FILE_TYPES:
        raise ValueError(f"gguf dtype {dtype!r}: one of {', '.join(FILE_TYPES)}")
    config = read_config(model_dir)
    m = config["model"]
    arch, reason = architecture(m)
    if arch is None:
        raise ValueError(f"{model_dir}: no GGUF: {reason}")
    weights = read_weights(model_dir, config)
    tensors = gpt2_tensors(weights, m) if arch == "gpt2" else llama_tensors(weights, m, arch)
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_name(name or os.path.basename(os.path.normpath(model_dir)))
        writer.add_file_type(FILE_TYPES[dtype])
        writer.add_vocab_size(m["vocab_size"])
        writer.add_context_length(m["context_length"])
        writer.add_embedding_length(m["d_model"])
        writer.add_feed_forward_length(m["d_ff"])
        writer.add_block_count(m["n_layers"])
        writer.add_head_count(m["n_heads"])
        writer.add_head_count_kv(m["n_heads"])
        if arch == "gpt2":
            writer.add_layer_norm_eps(LAYER_NORM_EPS)
        else:
            head_dim = m["d_model"] // m["n_heads"]
            writer.add_layer_norm_rms_eps(RMS_NORM_EPS)
            writer.add_rope_freq_base(ROPE_THETA)
            writer.add_rope_dimension_count(head_dim)
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        proto = read_proto(os.path.join(model_dir, "tokenizer.model"))
        add_tokenizer(writer, proto)
        if is_chat_model(config["train"]):  # llama.cpp's chat completion renders conversations with it
            writer.add_chat_template(CHAT_TEMPLATE)
        if proto.trainer_spec.model_type == proto.trainer_spec.UNIGRAM:
            log(
                f"{path}: a unigram tokenizer: llama.cpp merges its pieces by score, not as SentencePiece segments"
                " text, so text it tokenizes itself may get other ids than lmcore's (given lmcore's ids, logits agree)"
            )
        for key, t in tensors.items():
            data, kind = encode(t.detach().float().contiguous().numpy(), dtype)
            writer.add_tensor(key, data, raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return arch
