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


def test_keys_come_out_sorted_whatever_the_file_order():
    config = tiny_config("file:///x", None)
    reordered = dict(reversed(list(config.items())))
    assert list(prepare_config(config, SCHEMA)) == list(prepare_config(reordered, SCHEMA)) == sorted(prepare_config(config, SCHEMA))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["models"]["a"].update(n_layer=2), r"models\.a.*'n_layer' was unexpected"),
        (lambda c: c["models"]["a"].update(dropout=2), r"models\.a\.dropout.*2"),
        (lambda c: c["models"]["b"].update(d_model=50), r"models\.b\.d_model': 50 is not divisible by n_heads = 4"),
        (lambda c: c["sources"]["fake"].update(path="/data"), r"sources\.fake.*exactly one of url, path, pypi"),
        (lambda c: c["splits"].update(validation=0.6, test=0.5), r"'splits': validation \+ test = 1\.1"),
        (lambda c: c.update(modles={}), r"'modles' was unexpected"),
        (lambda c: c["models"]["a"].update(init_from={"hf": "/no/such/folder"}),
         r"models\.a\.init_from\.hf': '/no/such/folder' is not a Hugging Face model folder \(no config\.json in it\)"),
        (lambda c: c["models"]["a"].update(init_from={"model": "b"}), r"models\.a\.init_from': 'hf' is a required property"),
        (lambda c: c["tokenizers"]["tok"].update(model_file="/no/such.model"), r"tokenizers\.tok\.model_file': no file '/no/such\.model'"),
    ],
)
def test_errors_name_the_key_and_value(change, message):
    config = tiny_config("file:///x", None)
    change(config)
    with pytest.raises(ConfigError, match=message):
        prepare_config(config, SCHEMA)
