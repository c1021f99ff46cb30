"""Config validation: defaults filled, every error names the key."""

import os

import pytest
import yaml

from helpers import REPO, SCHEMA, tiny_config
from lmcore.config import ConfigError, prepare_config


def test_default_config_is_valid_and_gets_defaults():
    with open(os.path.join(REPO, "config.yaml")) as f:
        config = prepare_config(yaml.safe_load(f), SCHEMA)
    assert config["models"]["tiny"]["norm"] == "layernorm"  # from the schema
    assert config["models"]["tiny"]["max_steps"] == config["model_defaults"]["max_steps"]  # from model_defaults
    assert config["sampling"]["presets"]["greedy"]["temperature"] == 0.0


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(REPO, "configs"))))
def test_every_shipped_config_is_valid(name):
    """The configs the docs name run as they are: a key the schema renamed or dropped would fail here."""
    with open(os.path.join(REPO, "configs", name), encoding="utf-8") as f:
        assert prepare_config(yaml.safe_load(f), SCHEMA)["models"]


def test_keys_come_out_sorted_whatever_the_file_order():
    config = tiny_config("file:///x", None)
    reordered = dict(reversed(list(config.items())))
    assert (
        list(prepare_config(config, SCHEMA))
        == list(prepare_config(reordered, SCHEMA))
        == sorted(prepare_config(config, SCHEMA))
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["models"]["a"].update(n_layer=2),
            r"models\.a.*'n_layer' was unexpected\) \(did you mean 'n_layers'\?\)",
        ),
        (
            lambda c: c["models"]["a"].update(n_layer=c["models"]["a"].pop("n_layers")),
            r"models\.a': 'n_layers' is a required property; unknown key 'n_layer' \(did you mean 'n_layers'\?\)",
        ),
        (lambda c: c["models"]["a"].update(dropout=2), r"models\.a\.dropout.*2"),
        (lambda c: c["models"]["b"].update(d_model=50), r"models\.b\.d_model': 50 is not divisible by n_heads = 4"),
        (lambda c: c["sources"]["fake"].update(path="/data"), r"sources\.fake.*exactly one of url, path, pypi"),
        (lambda c: c["splits"].update(validation=0.6, test=0.5), r"'splits': validation \+ test = 1\.1"),
        (lambda c: c.update(modles={}), r"'modles' was unexpected"),
        (
            lambda c: c["models"]["a"].update(init_from={"hf": "/no/such/folder"}),
            r"models\.a\.init_from\.hf': '/no/such/folder' is not a Hugging Face model folder \(no config\.json in "
            r"it\)",
        ),
        (
            lambda c: c["models"]["a"].update(init_from={"model": "b"}),
            r"models\.a\.init_from\.model': d_model is 32 here but 48 in 'b'; a model continues another of the same "
            r"shape and tokenizer",
        ),
        (
            lambda c: c["models"]["a"].update(init_from={"model": "c"}),
            r"models\.a\.init_from\.model': 'c' is not a model of this config \(models: \['a', 'b'\]\)",
        ),
        (
            lambda c: (
                c["models"]["a"].update(init_from={"model": "b"}, d_model=48, n_layers=2, n_heads=4, position="rope"),
                c["models"]["b"].update(init_from={"model": "a"}),
            ),
            r"models\.b\.init_from\.model': a -> b -> a is a cycle",
        ),
        (
            lambda c: c["models"]["a"].update(init_from={"model": "b", "hf": "x"}),
            r"models\.a\.init_from'.*too many properties",
        ),
        (
            lambda c: c["models"]["a"].update(data={"sources": {"fake": 1, "wiki": 2}}),
            r"models\.a\.data\.sources\.wiki': no such source \(defined: \['fake'\]\)",
        ),
        (
            lambda c: c["models"]["a"].update(data={"sources": {"fake": 0}}),
            r"models\.a\.data\.sources\.fake': 0 is less than or equal to the minimum of 0",
        ),
        (
            lambda c: c["models"]["a"].update(max_flops=1e12, max_tokens=1000),
            r"models\.a\.max_flops': set max_flops \(1e\+12\) or max_tokens \(1000\), not both",
        ),
        (
            lambda c: c["models"]["a"].update(optimizer="muon", parallelism="fsdp"),
            r"models\.a\.optimizer': muon orthogonalises whole matrices, which parallelism: fsdp shards",
        ),
        (
            lambda c: c["tokenizers"]["tok"].update(model_file="/no/such.model"),
            r"tokenizers\.tok\.model_file': no file '/no/such\.model'",
        ),
        (lambda c: c.update(evals={"tasks": ["mine.yaml"]}), r"'evals\.tasks': no task file 'mine\.yaml'"),
        (
            lambda c: c["tokenizers"]["tok"].update(model_type="char", vocab_size=200),
            r"tokenizers\.tok\.vocab_size': 200 leaves no piece to learn: 3 special pieces, 4 chat markers, 1 "
            r"user-defined \(the newline included\) and 256 bytes \(byte_fallback\) take 264; "
            r"use a vocab_size above 264",
        ),
        (
            lambda c: c.update(resources={"trian": {"threads": 2}}),
            r"resources\.trian: no rule of that name \(did you mean 'train'\?\); the rules: clean, ",
        ),
    ],
)
def test_errors_name_the_key_and_value(change, message):
    config = tiny_config("file:///x", None)
    change(config)
    with pytest.raises(ConfigError, match=message):
        prepare_config(config, SCHEMA)


def test_every_rule_has_resources_its_own_the_schemas_or_the_common_defaults():
    config = tiny_config("file:///x", None)
    config["resources"] = {"shard": {"threads": 3}, "train": {"mem_mb": 900}}
    resources = prepare_config(config, SCHEMA)["resources"]
    assert resources["shard"] == {"threads": 3, "mem_mb": 2000, "runtime": 60}  # a key not given: the common one
    assert resources["train"] == {"threads": 1, "mem_mb": 900, "runtime": 60}
    assert resources["train_tokenizer"] == {"threads": 8, "mem_mb": 16000, "runtime": 240}  # the schema's for it
    assert resources["report"] == {"threads": 1, "mem_mb": 2000, "runtime": 60}


def sweep_config(grid, base=None):
    config = tiny_config("file:///x", None)
    config["sweeps"] = {"width": {"base": base or {"n_layers": 1, "n_heads": 2}, "grid": grid}}
    return config


def test_a_sweep_expands_into_ordinary_models_with_readable_names():
    config = prepare_config(sweep_config({"lr": [0.001, 0.003], "d_model": [32, 64]}), SCHEMA)
    names = sorted(n for n in config["models"] if n.startswith("width-"))
    assert names == [
        "width-d_model32-lr0.001",
        "width-d_model32-lr0.003",
        "width-d_model64-lr0.001",
        "width-d_model64-lr0.003",
    ]
    cell = config["models"]["width-d_model64-lr0.003"]
    assert (cell["d_model"], cell["lr"], cell["n_layers"], cell["context_length"]) == (
        64,
        0.003,
        1,
        32,
    )  # grid, base, model_defaults


@pytest.mark.parametrize(
    "grid, base, message",
    [
        ({"d_modle": [32]}, None, r"sweeps\.width\.grid\.d_modle': 'd_modle' is not a model key"),
        (
            {"d_model": [30]},
            {"n_layers": 1, "n_heads": 4},
            r"models\.width-d_model30\.d_model': 30 is not divisible by n_heads = 4",
        ),
        ({"lr": []}, None, r"sweeps\.width\.grid\.lr"),
    ],
)
def test_a_bad_sweep_is_a_config_error_naming_it(grid, base, message):
    with pytest.raises(ConfigError, match=message):
        prepare_config(sweep_config(grid, base), SCHEMA)


def test_a_sweep_model_named_like_a_model_is_a_config_error_naming_both():
    config = sweep_config({"d_model": [32]})
    config["models"]["width-d_model32"] = {"d_model": 32, "n_layers": 1, "n_heads": 2}
    with pytest.raises(
        ConfigError, match=r"sweeps\.width': its model 'width-d_model32' has the name of 'models\.width-d_model32'"
    ):
        prepare_config(config, SCHEMA)
