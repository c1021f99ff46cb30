"""Models as Hugging Face folders: `export(model_dir, out_dir)` writes one that `transformers`
loads offline with `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`
(and that llama.cpp's convert_hf_to_gguf.py and vLLM read): lmcore.export.architectures.HF_FILES, for the
option mixes an HF architecture has (lmcore.model.families.architecture says which, and why not). The
weights are laid out by lmcore.export.layouts, which also reads such folders back.

The tokenizer is a `tokenizers` serialisation of the SentencePiece model that gives the same
ids: the same pieces and merges (or unigram scores), byte fallback, lmcore's escape of U+2581,
spaces as U+2581, SentencePiece's split before each run of U+2581, and the user-defined pieces
(the newline) as added tokens. One exception: a private-use U+E000 directly followed by "s"
decodes as U+2581 (lmcore's escape character; SentencePiece never sees it otherwise).
"""

import os

from lmcore.export.architectures import GPT2_ACTIVATIONS, architecture
from lmcore.export.layouts import gpt2_weights, llama_weights
from lmcore.io import atomic_open, copy_file, write_json
from lmcore.model.config import LAYER_NORM_EPS, RMS_NORM_EPS, ROPE_THETA
from lmcore.model.folder import read_config, read_weights, save_safetensors
from lmcore.tokens.chat import CHAT_TEMPLATE, END, chat_ids, is_chat_model
from lmcore.tokens.tokenizer import ESCAPE, SPACE_SYMBOL, Tokenizer, read_proto


def llama_config(m, special):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": m["vocab_size"],
        "hidden_size": m["d_model"],
        "intermediate_size": m["d_ff"],
        "num_hidden_layers": m["n_layers"],
        "num_attention_heads": m["n_heads"],
        "num_key_value_heads": m["n_heads"],
        "head_dim": m["d_model"] // m["n_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": m["context_length"],
        "rms_norm_eps": RMS_NORM_EPS,
        "tie_word_embeddings": m["tie_embeddings"],
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "attention_bias": m["bias"],
        "mlp_bias": m["bias"],
        "attention_dropout": m["dropout"],
        "dtype": "float32",
        **special,
    }


def qwen3_config(m, special):
    """Llama's config with Qwen3's names: its attention normalises each head's queries and keys."""
    return {
        **llama_config(m, special),
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "use_sliding_window": False,
        "sliding_window": None,
        "layer_types": ["full_attention"] * m["n_layers"],
    }


def gpt2_config(m, special):
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": m["vocab_size"],
        "n_embd": m["d_model"],
        "n_inner": m["d_ff"],
        "n_layer": m["n_layers"],
        "n_head": m["n_heads"],
        "n_positions": m["context_length"],
        "activation_function": GPT2_ACTIVATIONS[m["mlp"]],
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "tie_word_embeddings": m["tie_embeddings"],
        "resid_pdrop": m["dropout"],
        "embd_pdrop": m["dropout"],
        "attn_pdrop": m["dropout"],
        "dtype": "float32",
        **special,
    }


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
        # BPE merges: each learned piece from any two pieces it splits into, ranked by the piece's
        # score (SentencePiece's merge order)
        learned = sorted((i for i, (_, _, t) in enumerate(pieces) if t == T.NORMAL), key=lambda i: -pieces[i][1])
        merges = (
            []
            if kind == proto.trainer_spec.CHAR
            else [
                (p[:k], p[k:])
                for i in learned
                for p in [pieces[i][0]]
                for k in range(1, len(p))
                if p[:k] in vocab and p[k:] in vocab
            ]
        )
        model = BPE(vocab, merges, unk_token=pieces[unk][0], byte_fallback=True, fuse_unk=True)
    else:
        raise ValueError(
            f"{spm_path}: SentencePiece model_type word has no Hugging Face tokenizer that gives the same ids"
        )
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(ESCAPE, ESCAPE * 2),
            normalizers.Replace(SPACE_SYMBOL, ESCAPE + "s"),
            normalizers.Replace(" ", SPACE_SYMBOL),
        ]
    )
    # SentencePiece starts a new word at each run of U+2581 (allow_whitespace_only_pieces)
    tok.pre_tokenizer = pre_tokenizers.Split(
        Regex(f"{SPACE_SYMBOL}+[^{SPACE_SYMBOL}]*|[^{SPACE_SYMBOL}]+"), behavior="isolated"
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace(SPACE_SYMBOL, " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Replace(ESCAPE * 2, ESCAPE),
            decoders.Replace(ESCAPE + "s", SPACE_SYMBOL),
        ]
    )
    tok.add_tokens([AddedToken(p, normalized=False, special=False) for p, _, t in pieces if t == T.USER_DEFINED])
    tok.add_special_tokens(
        [AddedToken(p, normalized=False, special=True) for p, _, t in pieces if t in (T.CONTROL, T.UNKNOWN)]
    )
    return tok.to_str()


def special_ids(tokenizer):
    sp = tokenizer.sp
    return {
        "bos_token_id": sp.bos_id() if sp.bos_id() >= 0 else None,
        "eos_token_id": sp.eos_id(),
        "pad_token_id": sp.pad_id() if sp.pad_id() >= 0 else None,
    }


def export(model_dir, out_dir):
    """Write lmcore.export.architectures.HF_FILES into `out_dir` for the model in `model_dir`; return the
    architecture name.
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
    hf = (gpt2_weights if arch == "gpt2" else llama_weights)(weights, m)
    save_safetensors(hf, os.path.join(out_dir, "model.safetensors"), {"format": "pt"})
    hf_config = {"llama": llama_config, "qwen3": qwen3_config, "gpt2": gpt2_config}[arch]
    write_json(os.path.join(out_dir, "config.json"), hf_config(m, special))
    generation = dict(special)
    if is_chat_model(config["train"]):  # `generate` ends a reply at the turn's end, as lmcore's chat does
        generation["eos_token_id"] = [special["eos_token_id"], chat_ids(tokenizer)[END]]
    write_json(os.path.join(out_dir, "generation_config.json"), generation)
    sp = tokenizer.sp
    with atomic_open(os.path.join(out_dir, "tokenizer.json")) as f:
        f.write(tokenizer_json(tokenizer.path))
    names = {"bos_token": sp.bos_id(), "eos_token": sp.eos_id(), "unk_token": sp.unk_id(), "pad_token": sp.pad_id()}
    write_json(
        os.path.join(out_dir, "tokenizer_config.json"),
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": m["context_length"],
            "clean_up_tokenization_spaces": False,
            # no space before the text and no BOS, as lmcore trains: llama.cpp's convert_hf_to_gguf.py reads these
            "add_prefix_space": False,
            "add_bos_token": False,
            "add_eos_token": False,
            **{k: sp.id_to_piece(i) for k, i in names.items() if i >= 0},
            **({"chat_template": CHAT_TEMPLATE} if is_chat_model(config["train"]) else {}),
        },
    )
    copy_file(
        tokenizer.path, os.path.join(out_dir, "tokenizer.model")
    )  # the SentencePiece model, for tools that read it (llama.cpp)
    return arch
