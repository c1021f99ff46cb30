"""Configuration: defaults from the schema, validation, and the checks a schema cannot express.

`prepare_config` is what the Snakefile calls before any job runs; every error names
the key and the value, e.g. `models.small.d_model: 100 is not divisible by n_heads = 3`.
"""

import copy
import difflib
import glob
import itertools
import json
import os
import re

import jsonschema

from lmcore.model.families import BLOCK_KEYS, PRESETS, SHAPE_KEYS
from lmcore.schema import load_schema
from lmcore.tokens.chat import CHAT_PIECES


class ConfigError(ValueError):
    pass


def _with_defaults(validator_class):
    """A validator class that, as it validates, sets every missing property the schema gives a
    default (a deep copy, null included), so that defaults nested in those defaults fill in
    turn: the pattern of jsonschema's FAQ and of `snakemake.utils.validate(set_default=True)`."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties_with_defaults})


FillingValidator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path):
    return ".".join(str(p) for p in path) or "<top level>"


# YAML 1.1 (PyYAML, and so Snakemake's config loader) reads 1e12, 3e-4 and 1.0e12 as strings: a number
# needs a dot and a signed exponent there (1.0e+12); and `--config 'model_defaults={gpus: 1}'` gives every
# value inside the mapping as a string. Where the schema wants a number, a string written as one is one.
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def yaml_number(value, types):
    """`value` as a number where it is a string like 1e12 or 2 and `types` (a schema's `type`) allows
    one; else `value`."""
    types = set(types if isinstance(types, list) else [types])
    if not (isinstance(value, str) and NUMBER.fullmatch(value) and types & {"number", "integer"}):
        return value
    number = float(value)
    return int(number) if number.is_integer() and "number" not in types else number


def numbers_from_yaml_strings(config, schema):
    """Turn, in place, every string like 1e12 or 2 that the schema expects as a number into that number."""
    while True:
        fixes = [
            e
            for e in jsonschema.Draft202012Validator(schema).iter_errors(config)
            if e.validator == "type" and yaml_number(e.instance, e.validator_value) is not e.instance
        ]
        if not fixes:
            return config
        for e in fixes:
            *parents, last = e.absolute_path
            target = config
            for key in parents:
                target = target[key]
            target[last] = yaml_number(e.instance, e.validator_value)


def validate(config, schema):
    """Fill the schema's defaults into `config` (in place) and raise ConfigError naming the first
    invalid key (the deepest, most specific error)."""
    errors = sorted(FillingValidator(schema).iter_errors(config), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        e = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"config key '{_key(e.absolute_path)}': {e.message}{hint(e)}")


def hint(error):
    """What to add to a schema error: for a missing required key, the keys beside it that the schema does
    not know (a misspelt key shows as both, and the misspelling is what to fix); for an unknown key,
    the nearest known one; for a value that fits none of a key's forms, what the forms are."""
    if error.validator == "oneOf" and error.schema.get("description"):
        return f": {error.schema['description']}"
    known = error.schema.get("properties") if isinstance(error.instance, dict) else None
    if not isinstance(known, dict) or error.schema.get("additionalProperties") is not False:
        return ""
    unknown = [k for k in error.instance if k not in known]
    if error.validator == "required":
        return "".join(f"; unknown key {k!r}{_guess(k, known)}" for k in unknown)
    return "".join(_guess(k, known) for k in unknown) if error.validator == "additionalProperties" else ""


def _guess(key, known):
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def sweep_value(value):
    """A grid value as it appears in a model name: 128, 0.003, 1e-05, rmsnorm, true."""
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def sweep_models(sweeps):
    """{sweep: {model name: {key: value}}}: every cell of every grid, named `<sweep>-<key><value>-...`
    with the keys in sorted order (e.g. `width-d_model128-lr0.003`)."""
    expanded = {}
    for sweep, spec in sorted((sweeps or {}).items()):
        keys = sorted(spec["grid"])
        expanded[sweep] = {
            "-".join([sweep] + [f"{k}{sweep_value(v)}" for k, v in zip(keys, values)]): dict(zip(keys, values))
            for values in itertools.product(*(spec["grid"][k] for k in keys))
        }
    return expanded


def budget_name(budget):
    """A FLOP budget as it appears in a model name: 1e12, 3e12, 1.5e13."""
    return re.sub(r"e\+?0*(?=\d)", "e", f"{budget:g}")


def scaling_models(scaling):
    """{study: {model name: (shape, budget)}}: every shape at every budget, named `<study>-<shape>-C<budget>`
    (e.g. `iso-d64l2-C1e12`)."""
    return {
        study: {
            f"{study}-{shape}-C{budget_name(budget)}": (shape, budget)
            for budget in sorted(spec["budgets"])
            for shape in sorted(spec["shapes"])
        }
        for study, spec in sorted((scaling or {}).items())
    }


def expand_studies(config, model_keys):
    """Add every sweep's grid cells and every scaling study's (shape, budget) pairs to `models`:
    a sweep's base, then the cell's values; a study's base, then the shape, then max_flops = budget.
    A key that is not a model key, or a name that `models` already has, is a ConfigError naming both."""
    models = dict(config.get("models") or {})
    for spec in (config.get("sweeps") or {}).values():  # grid values have no type of their own: the model key's
        for key, values in spec["grid"].items():
            spec["grid"][key] = [yaml_number(v, model_keys.get(key, {}).get("type", [])) for v in values]

    def add(name, entry, where):
        if name in models:
            raise ConfigError(
                f"config key '{where}': its model {name!r} has the name of 'models.{name}'; rename one of them"
            )
        models[name] = entry

    def check_keys(keys, where):
        for key in keys:
            if key not in model_keys:
                raise ConfigError(
                    f"config key '{where}.{key}': {key!r} is not a model key (see $defs.model in the schema)"
                )

    for sweep, cells in sweep_models(config.get("sweeps")).items():
        spec = config["sweeps"][sweep]
        check_keys(spec["grid"], f"sweeps.{sweep}.grid")
        for name, values in cells.items():
            add(name, {**(spec.get("base") or {}), **values}, f"sweeps.{sweep}")
    for study, cells in scaling_models(config.get("scaling")).items():
        spec = config["scaling"][study]
        for shape, entry in spec["shapes"].items():
            check_keys(entry or {}, f"scaling.{study}.shapes.{shape}")
        for name, (shape, budget) in cells.items():
            add(
                name,
                {**(spec.get("base") or {}), **(spec["shapes"][shape] or {}), "max_flops": budget},
                f"scaling.{study}",
            )
    config["models"] = models
    return config


def merge_model_defaults(config):
    """Each model: model_defaults, then its preset's shape, then its own keys (the last wins)."""
    defaults = config.get("model_defaults") or {}
    models = {}
    for name, entry in (config.get("models") or {}).items():
        merged = {**defaults, **(entry or {})}
        models[name] = {**defaults, **PRESETS.get(merged.get("preset"), {}), **(entry or {})}
    config["models"] = models
    return config


# What a model continued from another must share with it: the tokenizer and every key that shapes a
# tensor (context_length too where positions are learned; with rope a child may train on longer windows).
SHARED_WITH_PARENT = ("tokenizer",) + SHAPE_KEYS + BLOCK_KEYS


def check_parent(models, name):
    """`models.<name>.init_from.model` names another model, of the same shape and tokenizer, and no cycle."""
    chain, child = [name], name
    while (models[child]["init_from"] or {}).get("model"):
        parent = models[child]["init_from"]["model"]
        key = f"config key 'models.{child}.init_from.model'"
        if parent not in models:
            raise ConfigError(f"{key}: {parent!r} is not a model of this config (models: {sorted(models)})")
        if parent in chain:
            raise ConfigError(f"{key}: {' -> '.join(chain + [parent])} is a cycle; a model cannot start from itself")
        shared = SHARED_WITH_PARENT + (("context_length",) if models[child]["position"] == "learned" else ())
        for k in shared:
            if models[child][k] != models[parent][k]:
                raise ConfigError(
                    f"{key}: {k} is {models[child][k]!r} here but {models[parent][k]!r} in {parent!r}; "
                    f"a model continues another of the same shape and tokenizer"
                )
        chain.append(parent)
        child = parent


def check_teacher(models, name):
    """`models.<name>.distill.teacher.model` names another model of the same tokenizer and a context at least as
    long, trained in a way the student can wait for (no loop of teachers and parents)."""
    key = f"config key 'models.{name}.distill.teacher.model'"
    teacher = models[name]["distill"]["teacher"]["model"]
    if teacher not in models:
        raise ConfigError(f"{key}: {teacher!r} is not a model of this config (models: {sorted(models)})")
    if models[teacher]["tokenizer"] != models[name]["tokenizer"]:
        raise ConfigError(
            f"{key}: {teacher!r} uses tokenizer {models[teacher]['tokenizer']!r}, this model "
            f"{models[name]['tokenizer']!r}; a teacher's distribution is over the student's tokens"
        )
    if models[teacher]["context_length"] < models[name]["context_length"]:
        raise ConfigError(
            f"{key}: {teacher!r} reads {models[teacher]['context_length']} tokens, this model "
            f"{models[name]['context_length']}; the teacher needs the student's whole window"
        )
    if models[name]["parallelism"] == "fsdp":
        raise ConfigError(f"config key 'models.{name}.distill': with parallelism: ddp or one process, not fsdp")
    chain = model_chain(models, name)
    if chain:
        raise ConfigError(f"{key}: {' -> '.join(chain)} is a cycle; a model cannot wait for itself")


def check_preferences(config, name):
    """A `dpo` entry reads preference pairs only, against a reference of its tokenizer; no other entry reads them
    (their rejected answers are not text to learn)."""
    models, sources, m = config["models"], config["sources"], config["models"][name]
    own = config["tokenizers"][m["tokenizer"]]["sources"] or sorted(sources)
    read = sorted(m["data"]["sources"] or own)
    pairs = [s for s in read if holds_pairs(sources[s])]
    key = f"config key 'models.{name}"
    if not m["dpo"]:
        if pairs:
            raise ConfigError(
                f"{key}.data.sources': source {pairs[0]!r} holds preference pairs, which only a `dpo` entry reads; "
                f"name the sources this model reads in `models.{name}.data.sources`"
            )
        return
    others = [s for s in read if s not in pairs]
    if others:
        raise ConfigError(
            f"{key}.dpo': DPO learns from preference pairs, but source {others[0]!r} holds none; name the "
            f"preference sources in `models.{name}.data.sources`"
        )
    reference = m["dpo"]["reference"]["model"]
    if reference not in models:
        raise ConfigError(f"{key}.dpo.reference.model': {reference!r} is not a model of this config")
    if models[reference]["tokenizer"] != m["tokenizer"]:
        raise ConfigError(f"{key}.dpo.reference.model': {reference!r} uses another tokenizer than this model")
    for other in ("distill",):
        if m[other]:
            raise ConfigError(f"{key}.dpo': a model trains with one objective: dpo or {other}, not both")
    if m["parallelism"] == "fsdp":
        raise ConfigError(f"{key}.dpo': with parallelism: ddp or one process, not fsdp")
    chain = model_chain(models, name)
    if chain:
        raise ConfigError(
            f"{key}.dpo.reference.model': {' -> '.join(chain)} is a cycle; a model cannot wait for itself"
        )


def waits_for(models, name):
    """The models a model's training reads: the one it starts from, its teacher, its DPO reference."""
    from lmcore.train.init import other_models

    entry = models[name]
    return [n for n in [(entry["init_from"] or {}).get("model"), *other_models(entry).values()] if n in models]


def find_cycle(start, dependencies):
    """A path from `start` back to itself along `dependencies(node)`, or None."""
    stack, seen = [[start]], set()
    while stack:
        path = stack.pop()
        for dep in dependencies(path[-1]):
            if dep == start:
                return path + [dep]
            if dep not in seen:
                seen.add(dep)
                stack.append(path + [dep])
    return None


def model_chain(models, name):
    """A loop of the models `name` waits for (init_from, teachers, references), as names, or None."""
    return find_cycle(name, lambda m: waits_for(models, m))


RECORD_KEYS = {"jsonl", "parquet", "arrow", "chat", "chosen", "prompt", "html"}


def holds_conversations(source):
    """Whether a source's documents are conversations."""
    return isinstance(source["documents"], dict) and bool(
        {"chat", "chosen", "prompt", "dialogue"} & set(source["documents"])
    )


def holds_pairs(source):
    """Whether a source's documents are preference pairs (a chosen and a rejected answer)."""
    return isinstance(source["documents"], dict) and "rejected" in source["documents"]


def check_conversation_sources(name, entry, sources):
    """SFT (`loss: assistant`) learns from answers: every source the model reads must hold conversations."""
    read = sorted(entry["data"]["sources"] or sources)
    prose = [s for s in read if s in sources and not holds_conversations(sources[s])]
    if prose:
        raise ConfigError(
            f"config key 'models.{name}.loss': assistant takes the loss on conversations' answers, but source "
            f"{prose[0]!r} holds no conversations (documents: {sources[prose[0]]['documents']}); name the "
            f"conversation sources in `models.{name}.data.sources`"
        )


def check_patterns(name, documents):
    """A dialogue source's patterns compile, and the speaker's has the group that names the speaker."""
    for key in ("dialogue", "scene"):
        if key in documents:
            try:
                pattern = re.compile(documents[key])
            except re.error as e:
                raise ConfigError(f"config key 'sources.{name}.documents.{key}': {documents[key]!r}: {e}") from None
            if key == "dialogue" and pattern.groups < 1:
                raise ConfigError(
                    f"config key 'sources.{name}.documents.dialogue': {documents[key]!r} has no group; its first "
                    "group is the speaker's name, e.g. '^([A-Z][A-Z ]+)\\.$'"
                )


def check_semantics(config):
    """Checks the schema cannot express."""
    for name, source in config["sources"].items():
        given = [k for k in ("url", "path", "pypi") if source.get(k)]
        if len(given) != 1:
            raise ConfigError(
                f"config key 'sources.{name}': give exactly one of url, path, pypi (got {given or 'none'})"
            )
        records = isinstance(source["documents"], dict) and set(source["documents"]) & RECORD_KEYS
        if source["where"] and not records:
            raise ConfigError(
                f"config key 'sources.{name}.where': selects records by their fields; `documents: "
                f"{source['documents']}` has none (use jsonl, parquet, arrow, chat, prompt or html)"
            )
        if isinstance(source["documents"], dict) and "dialogue" in source["documents"]:
            check_patterns(name, source["documents"])
        if isinstance(source.get("url"), list) and source.get("sha256"):
            raise ConfigError(
                f"config key 'sources.{name}.sha256': one checksum for {len(source['url'])} URLs; give each its "
                "own: `url: [{url: ..., sha256: ...}, ...]`"
            )
    for name, m in config["models"].items():
        if m["d_model"] % m["n_heads"]:
            raise ConfigError(
                f"config key 'models.{name}.d_model': {m['d_model']} is not divisible by n_heads = {m['n_heads']}"
            )
        if m["loss"] == "assistant":
            check_conversation_sources(name, m, config["sources"])
        if m["lora"] and m["parallelism"] == "fsdp":
            raise ConfigError(
                f"config key 'models.{name}.lora': LoRA trains in one process or with parallelism: ddp; lmcore's "
                "LoRA layers are not sharded by fsdp"
            )
        if m["optimizer"] == "muon" and m["parallelism"] == "fsdp":
            raise ConfigError(
                f"config key 'models.{name}.optimizer': muon orthogonalises whole matrices, which parallelism: fsdp "
                "shards over the processes; use parallelism: ddp with muon, or optimizer: adamw with fsdp"
            )
        if m["position"] == "rope" and (m["d_model"] // m["n_heads"]) % 2:
            raise ConfigError(
                f"config key 'models.{name}.position': rope needs an even head size, got d_model / n_heads = "
                f"{m['d_model'] // m['n_heads']}"
            )
        if m["tokenizer"] not in config["tokenizers"]:
            raise ConfigError(
                f"config key 'models.{name}.tokenizer': '{m['tokenizer']}' is not defined under tokenizers (defined: "
                f"{sorted(config['tokenizers'])})"
            )
        if m["max_flops"] and m["max_tokens"]:
            raise ConfigError(
                f"config key 'models.{name}.max_flops': set max_flops ({m['max_flops']:g}) or max_tokens "
                f"({m['max_tokens']}), not both"
            )
        if m["min_lr"] > m["lr"]:
            raise ConfigError(f"config key 'models.{name}.min_lr': {m['min_lr']} is above lr = {m['lr']}")
        for source in m["data"]["sources"] or ():
            if source not in config["sources"]:
                raise ConfigError(
                    f"config key 'models.{name}.data.sources.{source}': no such source (defined: "
                    f"{sorted(config['sources'])})"
                )
        if m["distill"]:
            check_teacher(config["models"], name)
        check_preferences(config, name)
        init = m["init_from"] or {}
        if init.get("hf") and not os.path.isfile(os.path.join(init["hf"], "config.json")):
            raise ConfigError(
                f"config key 'models.{name}.init_from.hf': {init['hf']!r} is not a Hugging Face model folder "
                f"(no config.json in it)"
            )
        if init.get("model"):
            check_parent(config["models"], name)
    for name, tok in config["tokenizers"].items():
        if tok["model_file"] and not os.path.isfile(tok["model_file"]):
            raise ConfigError(f"config key 'tokenizers.{name}.model_file': no file {tok['model_file']!r}")
        ids = [i for i in tok["special_ids"].values() if i >= 0]
        if len(set(ids)) != len(ids) or max(ids) >= tok["vocab_size"]:
            raise ConfigError(
                f"config key 'tokenizers.{name}.special_ids': {tok['special_ids']} must be distinct and below "
                f"vocab_size = {tok['vocab_size']}"
            )
        # SentencePiece reserves these pieces before it learns any; it fails on a vocabulary they fill
        symbols = len({"\n", *tok["user_defined_symbols"]})
        reserved = len(ids) + len(CHAT_PIECES) + symbols + (256 if tok["byte_fallback"] else 0)
        if not tok["model_file"] and tok["vocab_size"] <= reserved:
            raise ConfigError(
                f"config key 'tokenizers.{name}.vocab_size': {tok['vocab_size']} leaves no piece to learn: {len(ids)} "
                f"special pieces, {len(CHAT_PIECES)} chat markers, {symbols} user-defined (the newline included)"
                + (" and 256 bytes (byte_fallback)" if tok["byte_fallback"] else "")
                + f" take {reserved}; use a vocab_size above {reserved}"
            )
    check_filters(config)
    check_evals(config["evals"]["tasks"])
    held_out = config["splits"]["validation"] + config["splits"]["test"]
    if not held_out < 1:
        raise ConfigError(f"config key 'splits': validation + test = {held_out} must be below 1")
    for split in ("validation", "test"):
        if config["splits"][split] <= 0:
            raise ConfigError(f"config key 'splits.{split}': must be above 0, got {config['splits'][split]}")


KEEP_FORMS = {"quality": ("top", "min_score"), "perplexity": ("top", "max_bits_per_byte", "buckets")}


def check_filters(config):
    """Tokenizers' sources exist and hold what their models read; a filter names what exists, keeps in a form
    that suits it, and makes no cycle (a reference model whose tokenizer or data waits for the filter it runs)."""
    sources, models, tokenizers = config["sources"], config["models"], config["tokenizers"]
    for name, tok in tokenizers.items():
        for s in tok["sources"] or ():
            if s not in sources:
                raise ConfigError(
                    f"config key 'tokenizers.{name}.sources': no source {s!r} (defined: {sorted(sources)})"
                )
    for name, m in models.items():
        own = tokenizers[m["tokenizer"]]["sources"]
        outside = sorted(set(m["data"]["sources"] or ()) - set(own or sources))
        if outside:
            raise ConfigError(
                f"config key 'models.{name}.data.sources': {outside[0]!r} is not among the sources of its tokenizer "
                f"{m['tokenizer']!r} ({own}), whose shards the model reads"
            )
    for name, source in sources.items():
        for kind, forms in KEEP_FORMS.items():
            spec, key = source[kind], f"config key 'sources.{name}.{kind}"
            if not spec:
                continue
            (form,) = spec["keep"]
            if form not in forms:
                raise ConfigError(f"{key}.keep': {form} does not suit a {kind} filter; use one of {list(forms)}")
        quality = source["quality"]
        if quality:
            if bool(quality["positive"]) == bool(quality["model_file"]):
                raise ConfigError(
                    f"config key 'sources.{name}.quality': give `positive` (a source to train a classifier on) or "
                    f"`model_file` (a fastText classifier), one of them"
                )
            if quality["model_file"] and not os.path.isfile(quality["model_file"]):
                raise ConfigError(f"config key 'sources.{name}.quality.model_file': no file {quality['model_file']!r}")
            for role in ("positive", "negative"):
                other = quality[role]
                if other is not None and other not in sources:
                    raise ConfigError(
                        f"config key 'sources.{name}.quality.{role}': no source {other!r} (defined: {sorted(sources)})"
                    )
            if quality["positive"] and quality["positive"] in (name, quality["negative"]):
                raise ConfigError(
                    f"config key 'sources.{name}.quality.positive': {quality['positive']!r} is also the negative "
                    "class; "
                    "the positive source is the text to keep more of, the negative (default: this source) the pool"
                )
        if source["perplexity"] and source["perplexity"]["model"] not in models:
            raise ConfigError(
                f"config key 'sources.{name}.perplexity.model': {source['perplexity']['model']!r} is not a model of "
                f"this config (models: {sorted(models)})"
            )
    for name in sources:
        cycle = filter_cycle(config, name)
        if cycle:
            raise ConfigError(
                f"config key 'sources.{name}.perplexity.model': {' -> '.join(cycle)} is a cycle: the reference model "
                f"waits for {name!r}'s filtered documents; give it a tokenizer that reads other sources "
                f"(`tokenizers.<name>.sources`)"
            )


def filter_dependencies(config, node):
    """What a node of the DAG waits for: a source's filtered documents on its reference model, a model on its
    tokenizer (and the shards of that tokenizer's sources) and the models it reads, a tokenizer on its sources."""
    kind, name = node
    if kind == "source":
        spec = config["sources"][name]["perplexity"]
        return [("model", spec["model"])] if spec else []
    if kind == "model":
        models = config["models"]
        return [("tokenizer", models[name]["tokenizer"])] + [("model", m) for m in waits_for(models, name)]
    return [("source", s) for s in config["tokenizers"][name]["sources"] or sorted(config["sources"])]


def filter_cycle(config, source):
    """The path from a source's filtered documents back to themselves, as `kind name` steps, or None."""
    path = find_cycle(("source", source), lambda node: filter_dependencies(config, node))
    return [f"{k} {n}" for k, n in path] if path else None


def check_evals(tasks):
    """A task YAML file that is not there, or a task name lm-eval does not know, fails before any job."""
    from lmcore.evaluation.harness import TASK_FILE, unknown_builtin_tasks

    for task in tasks:
        if task.endswith(TASK_FILE) and not os.path.isfile(task):
            raise ConfigError(f"config key 'evals.tasks': no task file {task!r}")
    unknown = unknown_builtin_tasks(tasks)
    if unknown:
        raise ConfigError(
            f"config key 'evals.tasks': {unknown} is not next_line, a .yaml file or a task lm-eval knows "
            "(`lm_eval ls tasks` lists them)"
        )


def rule_names(folder):
    """The rules of the workflow's rules/*.smk, by name."""
    names = []
    for path in sorted(glob.glob(os.path.join(folder, "*.smk"))):
        with open(path, encoding="utf-8") as f:
            names += re.findall(r"^rule (\w+):", f.read(), flags=re.M)
    return names


def fill_resources(config, schema, rules):
    """Every rule's threads, mem_mb and runtime: its own in `resources`, the schema's for the rule, else
    `$defs.resources`'s; a name that is no rule of the workflow is an error that names the rules."""
    resources = config["resources"]
    for name in resources:
        if name not in rules:
            raise ConfigError(
                f"resources.{name}: no rule of that name{_guess(name, rules)}; the rules: {', '.join(rules)}"
            )
    defaults = {k: v["default"] for k, v in schema["$defs"]["resources"]["properties"].items()}
    for name in rules:
        resources[name] = {**defaults, **resources.get(name, {})}


def prepare_config(config, schema_path):
    """Return a validated copy of `config` with defaults filled and model_defaults merged.

    Keys come out sorted, so params built from it are the same whatever order the
    YAML file used, and a rerun is triggered only by a changed value.
    """
    schema = load_schema(schema_path)
    config = numbers_from_yaml_strings(copy.deepcopy(dict(config)), schema)
    config = expand_studies(config, schema["$defs"]["model"]["properties"])
    config = numbers_from_yaml_strings(merge_model_defaults(config), schema)
    validate(config, schema)
    fill_resources(
        config,
        schema,
        rule_names(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(schema_path))), "rules")),
    )
    check_semantics(config)
    return json.loads(json.dumps(config, sort_keys=True))
