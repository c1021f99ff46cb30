"""GGUF files for llama.cpp. Everywhere: what the gguf package reads back from an export is what
llama.cpp's own converter (convert_hf_to_gguf.py) makes of the model's Hugging Face folder, whose
logits transformers checks (test_hf.py), and its tokenizer is the SentencePiece model's. Where
llama-cpp-python is installed (`make llama-cpp` builds it), llama.cpp itself computes lmcore's
logits, greedy ids and token ids from the file."""

import importlib.util
import json
import random

import numpy as np
import pytest
import torch
from gguf import MODEL_ARCH, GGMLQuantizationType, GGUFReader, SpecialVocab, TokenType, get_tensor_name_map
from gguf.quants import dequantize

from helpers import FAMILIES, MIXED_TEXT, chat_folder, conversations, exported_family, train_tokenizer, trained_folder
from lmcore.export.architectures import architecture
from lmcore.export.gguf import encode, export
from lmcore.export.hf import export as export_hf
from lmcore.export.layouts import gpt2_weights, llama_weights
from lmcore.model.folder import load_model, read_config, read_weights
from lmcore.model.generate import generate

ARCHS = {"llama": MODEL_ARCH.LLAMA, "qwen3": MODEL_ARCH.QWEN3, "gpt2": MODEL_ARCH.GPT2}
needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed (make llama-cpp)"
)


def permute(weights, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: HF's rotary halves back to llama.cpp's interleaved pairs."""
    shape = weights.shape
    return weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def converted(folder):
    """(architecture, {GGUF name: tensor}) as llama.cpp's converter makes them of the model's Hugging Face
    tensors: names through gguf's TensorNameMap, Llama's q and k permuted (LlamaModel.modify_tensors),
    GPT-2's Conv1D matrices transposed (GPT2Model.modify_tensors), Qwen3's as they are."""
    config = read_config(folder)
    m = config["model"]
    arch = architecture(m)[0]
    hf = (gpt2_weights if arch == "gpt2" else llama_weights)(read_weights(folder, config), m)
    names = get_tensor_name_map(ARCHS[arch], m["n_layers"])
    out = {}
    for name, t in hf.items():
        if arch == "llama" and name.endswith(("q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias")):
            t = permute(t, m["n_heads"])
        if arch == "gpt2" and name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            t = t.t()
        out[names.get_name(name, try_suffixes=(".weight", ".bias"))] = t.numpy()
    return arch, out


def field(reader, key):
    return reader.fields[key].contents()


@pytest.fixture(params=sorted(FAMILIES))
def exported(request, tmp_path, bpe):
    return exported_family(request.param, tmp_path, bpe, export, "model.gguf")


def test_the_gguf_holds_what_llama_cpps_converter_makes_of_the_hugging_face_folder(exported):
    folder, path = exported
    arch, expected = converted(folder)
    reader = GGUFReader(path)
    assert field(reader, "general.architecture") == arch
    assert sorted(t.name for t in reader.tensors) == sorted(expected)
    for t in reader.tensors:
        assert t.tensor_type == GGMLQuantizationType.F32, t.name
        assert np.array_equal(t.data, expected[t.name]), t.name
    m = read_config(folder)["model"]
    shape = {"context_length": 24, "embedding_length": 32, "block_count": 2, "feed_forward_length": m["d_ff"]}
    assert {k: field(reader, f"{arch}.{k}") for k in shape} == shape
    assert field(reader, f"{arch}.attention.head_count") == field(reader, f"{arch}.attention.head_count_kv") == 4


def test_the_gguf_tokenizer_is_the_sentencepiece_model_with_no_space_prefix_and_no_bos(exported, bpe):
    _, path = exported
    reader = GGUFReader(path)
    sp = bpe.sp
    assert field(reader, "tokenizer.ggml.model") == "llama"
    assert field(reader, "tokenizer.ggml.tokens") == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert np.allclose(field(reader, "tokenizer.ggml.scores"), [sp.get_score(i) for i in range(sp.get_piece_size())])
    types = field(reader, "tokenizer.ggml.token_type")
    assert types[sp.piece_to_id("\n")] == TokenType.USER_DEFINED
    assert types[sp.piece_to_id("<0x41>")] == TokenType.BYTE
    assert types[sp.eos_id()] == types[sp.bos_id()] == TokenType.CONTROL and types[sp.unk_id()] == TokenType.UNKNOWN
    assert field(reader, "tokenizer.ggml.eos_token_id") == bpe.eot_id
    assert field(reader, "tokenizer.ggml.add_space_prefix") is False
    assert field(reader, "tokenizer.ggml.add_bos_token") is False


def test_f16_and_q8_0_store_the_matrices_in_fewer_bits_and_the_vectors_in_f32(tmp_path, bpe):
    folder = trained_folder(tmp_path, bpe, FAMILIES["llama-bias"])
    export(folder, tmp_path / "f32.gguf")
    full = {t.name: t.data for t in GGUFReader(tmp_path / "f32.gguf").tensors}
    for dtype, kind, share in (("f16", GGMLQuantizationType.F16, 0.6), ("q8_0", GGMLQuantizationType.Q8_0, 0.4)):
        export(folder, tmp_path / f"{dtype}.gguf", dtype=dtype)
        for t in GGUFReader(tmp_path / f"{dtype}.gguf").tensors:
            assert t.tensor_type == (kind if full[t.name].ndim == 2 else GGMLQuantizationType.F32), t.name
            w = full[t.name]
            back = dequantize(t.data, t.tensor_type).reshape(w.shape)
            # f16 rounds each weight; Q8_0 each to a step of its block of 32's largest magnitude / 127
            step = np.abs(w).max() / 127 if kind == GGMLQuantizationType.Q8_0 else np.abs(w).max() / 1024
            assert np.abs(back - w).max() <= step, t.name
        assert (tmp_path / f"{dtype}.gguf").stat().st_size < share * (tmp_path / "f32.gguf").stat().st_size


def test_a_matrix_whose_rows_do_not_split_into_q8_0_blocks_is_stored_in_f16():
    assert encode(np.ones((4, 48), np.float32), "q8_0")[1] == GGMLQuantizationType.F16
    assert encode(np.ones((4, 64), np.float32), "q8_0")[1] == GGMLQuantizationType.Q8_0
    assert encode(np.ones(64, np.float32), "q8_0")[1] == GGMLQuantizationType.F32


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({**FAMILIES["llama-untied"], "logit_softcap": 30.0}, "logit_softcap: 30.0"),
        ({**FAMILIES["gpt2-tied"], "position": "rope"}, "position: rope"),
    ],
)
def test_a_model_no_llama_cpp_graph_computes_is_named_and_no_file_is_left(tmp_path, bpe, options, named):
    folder = trained_folder(tmp_path, bpe, options)
    with pytest.raises(ValueError, match=named):
        export(folder, tmp_path / "model.gguf")
    assert list(tmp_path.glob("*.gguf")) == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_a_bad_dtype_is_named(tmp_path, bpe):
    folder = trained_folder(tmp_path, bpe, FAMILIES["llama-tied"])
    with pytest.raises(ValueError, match="'q4'"):
        export(folder, tmp_path / "model.gguf", dtype="q4")


def llama(path, n_ctx=24, **options):
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=1, n_batch=n_ctx, verbose=False, **options)


@needs_llama_cpp
def test_llama_cpp_computes_lmcores_logits_and_greedy_ids(exported):
    folder, path = exported
    ours, _ = load_model(folder)
    ids = torch.randint(0, ours.cfg.vocab_size, (24,), generator=torch.Generator().manual_seed(1)).tolist()
    model = llama(path, logits_all=True)
    model.eval(ids)
    with torch.no_grad():
        expected = ours(torch.tensor([ids]))[0][0].numpy()
    assert np.abs(np.array(model.scores[: len(ids)]) - expected).max() < 1e-3 * np.abs(expected).max()
    prompt = [5, 17, 42]
    greedy = list(generate(ours, prompt, 16, temperature=0.0))
    model.reset()
    theirs = [t for _, t in zip(range(16), model.generate(prompt, top_k=1, temp=0.0, reset=True))]
    assert theirs == greedy
    for dtype, tolerance in (("f16", 1e-2), ("q8_0", 5e-2)):
        export(folder, path.with_name(f"{dtype}.gguf"), dtype=dtype)
        fewer_bits = llama(path.with_name(f"{dtype}.gguf"), logits_all=True)
        fewer_bits.eval(ids)
        assert np.abs(np.array(fewer_bits.scores[: len(ids)]) - expected).max() < tolerance * np.abs(expected).max()


@needs_llama_cpp
def test_llama_cpp_tokenizes_text_to_lmcores_ids_and_back(tmp_path, bpe):
    folder = trained_folder(tmp_path, bpe, FAMILIES["llama-tied"])
    export(folder, tmp_path / "model.gguf")
    model = llama(tmp_path / "model.gguf", vocab_only=True)
    rng = random.Random(0)
    alphabet = "abc XYZ\n\t  .,;'\"é漢😀\u0301-_<|>\u00a0the king"  # no U+2581: lmcore escapes it, llama.cpp not
    texts = [MIXED_TEXT.replace("\u2581", "_"), " ", "\n", "  lead", "trail  ", "ROMEO:\nWhat light?\n"]
    for text in texts + ["".join(rng.choice(alphabet) for _ in range(40)) for _ in range(50)]:
        ids = model.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        assert ids == bpe.encode(text), repr(text)
        assert model.detokenize(ids).decode("utf-8") == text, repr(text)


def test_a_unigram_tokenizer_is_written_with_a_warning_that_llama_cpp_may_tokenize_otherwise(tmp_path, bpe):
    unigram = train_tokenizer(tmp_path / "unigram.model", model_type="unigram", vocab_size=400)
    said = []
    export(trained_folder(tmp_path, unigram, FAMILIES["llama-tied"]), tmp_path / "u.gguf", log=said.append)
    assert len(said) == 1 and "u.gguf: a unigram tokenizer" in said[0]
    assert field(GGUFReader(tmp_path / "u.gguf"), "tokenizer.ggml.tokens")[3:] == [
        unigram.sp.id_to_piece(i) for i in range(3, unigram.vocab_size)
    ]
    export(trained_folder(tmp_path / "b", bpe, FAMILIES["llama-tied"]), tmp_path / "b.gguf", log=said.append)
    assert len(said) == 1


def test_the_hugging_face_folder_tells_llama_cpps_converter_no_space_prefix_and_no_bos(tmp_path, bpe):
    """convert_hf_to_gguf.py reads add_prefix_space from tokenizer_config.json itself, and the special
    tokens through the gguf package's SpecialVocab: without them its GGUF would tokenize text otherwise."""
    export_hf(trained_folder(tmp_path, bpe, FAMILIES["llama-tied"]), tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["add_prefix_space"] is False
    vocab = SpecialVocab(tmp_path / "hf", n_vocab=bpe.vocab_size)
    assert vocab.add_special_token == {"bos": False, "eos": False}
    assert vocab.special_token_ids["eos"] == bpe.eot_id


@needs_llama_cpp
def test_llama_cpps_chat_completion_renders_lmcores_template_and_replies_as_lmcore_does(tmp_path, bpe):
    """llama-cpp-python formats a conversation with the GGUF file's tokenizer.chat_template, tokenizes it to
    lmcore's ids, and its greedy reply (stopping at <|end|>, a turn's end llama.cpp knows) is lmcore's."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from lmcore.model.converse import reply
    from lmcore.tokens.chat import CHAT_TEMPLATE, render

    folder = chat_folder(tmp_path, bpe)
    export(folder, tmp_path / "chat.gguf")
    ours, _ = load_model(folder)
    model = llama(tmp_path / "chat.gguf", n_ctx=256)
    formatter = Jinja2ChatFormatter(CHAT_TEMPLATE, eos_token="", bos_token="")
    for messages in conversations(10, seed=7):
        prompt = formatter(messages=messages[:-1]).prompt
        ids = model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        assert ids == render(bpe, messages[:-1], add_generation_prompt=True)[0].tolist()
        theirs = model.create_chat_completion(messages[:-1], max_tokens=8, temperature=0.0, top_k=1)
        sampling = {"max_new_tokens": 8, "temperature": 0.0, "seed": 0}
        assert theirs["choices"][0]["message"]["content"] == "".join(reply(ours, bpe, messages[:-1], sampling))
