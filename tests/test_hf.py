"""Models in the Hugging Face layout, both ways: what transformers loads from an export computes
the same logits, generates the same ids and tokenizes to the same ids as lmcore; an HF model
loads back into lmcore with the same logits."""

import dataclasses
import json
import random

import pytest
import torch

from helpers import FAMILIES, MIXED_TEXT, exported_family, tiny_entry, trained_folder
from lmcore.export.architectures import architecture
from lmcore.export.hf import export
from lmcore.export.layouts import load_hf
from lmcore.model.config import ModelConfig
from lmcore.model.folder import load_model
from lmcore.model.gpt import GPT

transformers = pytest.importorskip("transformers")


@pytest.fixture(params=sorted(FAMILIES))
def exported(request, tmp_path, bpe):
    return exported_family(request.param, tmp_path, bpe, export, "hf")


def test_transformers_loads_the_export_and_computes_the_same_logits_and_greedy_ids(exported):
    folder, hf_dir = exported
    ours, _ = load_model(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    ids = torch.randint(0, ours.cfg.vocab_size, (3, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(theirs(ids).logits, ours(ids)[0], atol=1e-4)
    from lmcore.model.generate import generate

    prompt = [5, 17, 42]
    expected = list(generate(ours, prompt, 20, temperature=0.0))
    out = theirs.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert out[0, 3:].tolist() == expected


def test_the_exported_tokenizer_gives_lmcores_ids_and_text_back(exported, bpe):
    _, hf_dir = exported
    theirs = transformers.AutoTokenizer.from_pretrained(hf_dir)
    rng = random.Random(0)
    alphabet = "abc XYZ\n\t  .,;'\"é漢😀\u0301-_<|>\u00a0\u2581the king"
    for text in [MIXED_TEXT, "", " ", "\n", "  lead", "trail  "] + [
        "".join(rng.choice(alphabet) for _ in range(40)) for _ in range(50)
    ]:
        ids = bpe.encode(text)
        assert theirs(text)["input_ids"] == ids, repr(text)
        assert theirs.decode(ids) == text
    assert theirs.eos_token_id == bpe.eot_id
    config = json.loads((hf_dir / "generation_config.json").read_text())
    assert config["eos_token_id"] == bpe.eot_id


@pytest.mark.parametrize("kind", ["unigram", "char"])
def test_unigram_and_char_tokenizers_export_with_the_same_ids(tmp_path, kind):
    from helpers import train_tokenizer
    from lmcore.export.hf import tokenizer_json

    ours = train_tokenizer(tmp_path / "spm.model", kind)
    import tokenizers

    theirs = tokenizers.Tokenizer.from_str(tokenizer_json(ours.path))
    for text in (MIXED_TEXT, "the  king\n\nand   queen"):
        assert theirs.encode(text).ids == ours.encode(text)
        assert theirs.decode(ours.encode(text), skip_special_tokens=False) == text


@pytest.mark.parametrize("family", ["llama", "qwen3", "gpt2", "gpt2-exact-gelu"])
def test_a_model_saved_by_transformers_loads_into_lmcore_with_the_same_logits(tmp_path, family):
    torch.manual_seed(0)
    if family == "qwen3":
        config = transformers.Qwen3Config(
            vocab_size=300, hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, head_dim=8, max_position_embeddings=24, tie_word_embeddings=False, rms_norm_eps=1e-6,
        )  # fmt: skip
        theirs = transformers.Qwen3ForCausalLM(config)
        with torch.no_grad():  # q_norm and k_norm start at 1: away from it, so that a mix-up of rows shows
            for name, p in theirs.named_parameters():
                if "q_norm" in name or "k_norm" in name:
                    p.add_(0.3 * torch.randn_like(p))
    elif family == "llama":
        config = transformers.LlamaConfig(
            vocab_size=300,
            hidden_size=32,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=24,
            tie_word_embeddings=False,
            rms_norm_eps=1e-6,
        )
        theirs = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.GPT2Config(
            vocab_size=300,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=24,
            activation_function="gelu" if family == "gpt2-exact-gelu" else "gelu_new",
        )
        theirs = transformers.GPT2LMHeadModel(config)
    theirs.save_pretrained(tmp_path / "hf")
    m, weights = load_hf(tmp_path / "hf")
    ours = GPT(ModelConfig(**m))
    ours.load_state_dict(weights, strict=not m["tie_embeddings"])
    ids = torch.randint(0, 300, (2, 24))
    with torch.no_grad():
        assert torch.allclose(ours.eval()(ids)[0], theirs.eval()(ids).logits, atol=1e-4)


def test_a_gpt2_activation_lmcore_does_not_compute_is_refused_by_name(tmp_path):
    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=8, activation_function="relu"
        )
    ).save_pretrained(tmp_path / "hf")
    with pytest.raises(ValueError, match="activation_function 'relu' has no lmcore MLP"):
        load_hf(tmp_path / "hf")


def test_an_option_mix_without_an_hf_architecture_is_named_not_exported(tmp_path, bpe):
    mixed = {"norm": "rmsnorm", "position": "learned", "mlp": "swiglu", "bias": False, "tie_embeddings": True}
    folder = trained_folder(tmp_path, bpe, mixed)
    with pytest.raises(
        ValueError, match=r"not exported: position: learned: no Hugging Face architecture has this mix.*Llama"
    ):
        export(folder, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    assert architecture({**mixed, "norm": "layernorm", "position": "learned", "mlp": "gelu", "bias": False})[
        1
    ].startswith("bias: false")


def entry_of_20_steps(**changes):
    return tiny_entry(**{"max_steps": 20, **changes})


def test_round_trip_an_exported_model_imported_with_init_from_starts_at_its_validation_loss(tmp_path, shards):
    from lmcore.train.config import TrainJob
    from lmcore.train.loop import train

    first = train(TrainJob(entry_of_20_steps(), *shards, tmp_path / "first", tmp_path / "ck1"), log=lambda *a: None)
    assert export(tmp_path / "first", tmp_path / "hf") == "gpt2"
    lines = []
    again = train(
        TrainJob(
            entry_of_20_steps(init_from={"hf": str(tmp_path / "hf")}, max_steps=2),
            *shards,
            tmp_path / "again",
            tmp_path / "ck2",
        ),
        log=lines.append,
    )
    assert again["initial_val_loss"] == pytest.approx(first["best_val_loss"], abs=1e-6)
    assert f"starting from the weights of {tmp_path / 'hf'}" in lines


def test_init_from_weights_of_another_shape_fails_before_any_step_naming_the_tensor(tmp_path, shards):
    from lmcore.train.config import TrainJob
    from lmcore.train.loop import train

    train(TrainJob(entry_of_20_steps(max_steps=2), *shards, tmp_path / "first", tmp_path / "ck1"), log=lambda *a: None)
    export(tmp_path / "first", tmp_path / "hf")
    with pytest.raises(
        ValueError,
        match=r"init_from .*hf: tensor tok_emb.weight has shape \(400, 32\) there, \(400, 48\) in this model entry",
    ):
        train(
            TrainJob(
                entry_of_20_steps(d_model=48, init_from={"hf": str(tmp_path / "hf")}),
                *shards,
                tmp_path / "b",
                tmp_path / "ck2",
            ),
            log=lambda *a: None,
        )
    with pytest.raises(ValueError, match=r"init_from .*hf: position is learned there, rope in this model entry"):
        train(
            TrainJob(
                entry_of_20_steps(position="rope", init_from={"hf": str(tmp_path / "hf")}),
                *shards,
                tmp_path / "c",
                tmp_path / "ck3",
            ),
            log=lambda *a: None,
        )
    assert not (tmp_path / "ck2").exists() or not list((tmp_path / "ck2").iterdir())


def test_a_tokenizer_given_as_a_file_is_used_as_is(tmp_path, bpe):
    from lmcore.tokens.tokenizer import use_model_file

    assert use_model_file(bpe.path, tmp_path / "spm.model") == bpe.vocab_size
    assert (tmp_path / "spm.model").read_bytes() == open(bpe.path, "rb").read()
    (tmp_path / "junk.model").write_text("not a model")
    with pytest.raises(ValueError, match=r"tokenizer model_file .*junk.model: not a SentencePiece model"):
        use_model_file(tmp_path / "junk.model", tmp_path / "out.model")


@pytest.mark.parametrize(
    "option, named",
    [({"mlp": "relu2"}, "mlp: relu2"), ({"logit_softcap": 15.0}, "logit_softcap: 15.0"),
     ({"qk_norm": True, "bias": True}, "qk_norm: true")],
)  # fmt: skip
def test_a_recipe_option_no_hf_architecture_computes_is_named_not_exported(option, named):
    llama = {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False}
    arch, reason = architecture({**llama, **option})
    assert arch is None and named in reason
    assert architecture({**llama, "zero_init": True})[0] == "llama"  # how weights start changes no layout


def test_every_model_option_is_free_taken_by_an_architecture_or_stops_the_export(monkeypatch):
    """An option added to ModelConfig and to no table of lmcore.export.architectures is not exported as
    plain Llama: it must be at its default, or the export names it."""
    from lmcore.export import architectures
    from lmcore.model.config import ModelConfig

    llama = {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, "tie_embeddings": False}
    for f in dataclasses.fields(ModelConfig):
        if f.name in architectures.FREE:
            continue
        other = {bool: not f.default, str: "other"}.get(type(f.default), 12.5)  # a value unlike the default
        arch, reason = architecture({**llama, f.name: other})
        assert (arch and other in architectures.HF_ARCHITECTURES[arch][f.name]) or f"{f.name}: " in reason, f.name
    assert architecture({**llama, "d_model": 48, "dropout": 0.1, "zero_init": True})[0] == "llama"
    monkeypatch.setitem(architectures.DEFAULTS, "sliding_window", None)  # an option no architecture lists
    assert architecture({**llama, "sliding_window": None})[0] == "llama"
    arch, reason = architecture({**llama, "sliding_window": 64})
    assert arch is None and reason.startswith("sliding_window: 64: no Hugging Face architecture has this mix")
