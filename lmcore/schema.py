"""The config schema, schemas/config.schema.yaml: every key of a config, its type, its default and what it
means, stated once. The dataclasses of a model entry (ModelConfig, TrainConfig) take their defaults from it."""

import copy
import functools
import os
from dataclasses import field

import yaml

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas", "config.schema.yaml")


@functools.cache
def load_schema(path=SCHEMA_PATH):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def model_default(key):
    """The schema's default of a `models.<name>` key (a copy: a list or dict default is never shared)."""
    return copy.deepcopy(load_schema()["$defs"]["model"]["properties"][key]["default"])


def schema_defaults(cls):
    """A class decorator, under @dataclass: each annotated field without a value takes the schema's default of
    the model key of its name, so that a default is stated once, in the schema."""
    keys = load_schema()["$defs"]["model"]["properties"]
    for name in cls.__annotations__:
        if name in cls.__dict__ or "default" not in keys.get(name, {}):
            continue
        default = keys[name]["default"]
        if isinstance(default, (list, dict)):
            setattr(cls, name, field(default_factory=functools.partial(model_default, name)))
        else:
            setattr(cls, name, default)
    return cls
