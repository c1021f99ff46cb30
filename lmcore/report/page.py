"""The run report's page: one self-contained HTML file (inline SVG plots, no network needed to view it),
rendered from templates/report.html.j2 by Jinja2 with autoescaping: every string that came from the
corpus, a config or a model is HTML-escaped.
"""

import csv
import datetime
import glob
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess

import jinja2
import markupsafe

from lmcore.config import scaling_models, sweep_models
from lmcore.data.quality import BINS
from lmcore.evaluation.contamination import contamination_table
from lmcore.evaluation.scaling import fit
from lmcore.export.architectures import architecture
from lmcore.io import read_json, read_jsonl
from lmcore.report.plots import (
    histogram_plot,
    isoflop_plot,
    length_plot,
    line_plot,
    optima_plot,
    score_plot,
    size_plot,
    sweep_plot,
)


def fmt(value, digits=3):
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if abs(value) == float("inf"):
            return "∞" if value > 0 else "-∞"
        if abs(value) >= 1e9:  # a diverged model's perplexity has a hundred digits
            return f"{value:.{digits}g}"
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        return f"{value:.{digits + 1}g}" if abs(value) >= 1 else f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


NUMBER = re.compile(r"[-+]?[\d,.]+(e[-+]?\d+)?%?|–|nan|-?∞")


def is_number(value):
    """Whether a table cell holds a figure (right-aligned on one line) rather than text (left-aligned, wrapped)."""
    return not isinstance(value, str) or bool(NUMBER.fullmatch(fmt(value)))


def mfu_text(summary):
    """MFU as a percentage, or None where there is none or it exceeds 1 (a peak measured too low)."""
    mfu = summary.get("mfu")
    return f"{mfu:.1%}" if mfu is not None and 0 <= mfu <= 1 else None


def vocabulary(stats):
    """'4,096', or '20,943 of 100,000 requested' where the corpus gave fewer pieces."""
    requested = stats.get("requested_vocab_size", stats["vocab_size"])
    return (
        f"{stats['vocab_size']:,}"
        if stats["vocab_size"] == requested
        else f"{stats['vocab_size']:,} of {requested:,} requested"
    )


def short_vocabularies(tokenizers):
    """The tokenizers whose corpus gave fewer pieces than their vocab_size asked, said at the page's top."""
    return [
        f"{name}: {t['vocab_size']:,} pieces, fewer than the vocab_size of {t['requested_vocab_size']:,} asked"
        for name, t in tokenizers.items()
        if t["vocab_size"] < t.get("requested_vocab_size", t["vocab_size"])
    ]


def config_digest(config):
    """The first 12 hex digits of the sha256 of the resolved config: equal digests, equal runs."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def git_commit(folder):
    try:
        return (
            subprocess.run(
                ["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or "unknown"
        )
    except OSError:
        return "unknown"


def versions():
    """Versions of the packages the run used, read from their metadata (lmcore imports no Snakemake)."""
    found = {"python": platform.python_version()}
    for package in ("torch", "numpy", "sentencepiece", "snakemake"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("lmcore.report", "templates"),
    autoescape=True,  # every string from the corpus, a config or a model is HTML-escaped
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["fmt"] = fmt
TEMPLATES.tests["numeric"] = is_number


def table(items, columns):
    """A table as the template draws it: `columns` is [(header, getter)], one row per item."""
    return {"headers": [header for header, _ in columns], "rows": [[get(item) for _, get in columns] for item in items]}


def summary(key):
    return lambda m: m["summary"][key]


def test(key, split="test"):
    return lambda m: m["eval"][split][key]


def beats_unigram(m):
    return m["eval"]["test"]["loss"] < m["eval"]["baseline"]["loss"]  # False for NaN too


QUALITY = [
    ("model", lambda m: m["name"]),
    ("parameters", summary("parameters")),
    ("best validation loss (nats/token)", summary("best_val_loss")),
    ("test loss (nats/token)", test("loss")),
    ("test perplexity", test("perplexity")),
    ("test bits per byte", test("bits_per_byte")),
    ("unigram test perplexity", test("perplexity", "baseline")),
    ("unigram test bits per byte", test("bits_per_byte", "baseline")),
    ("beats unigram", lambda m: "yes" if beats_unigram(m) else "NO"),
    ("HF export", lambda m: m.get("hf", "not exported")),
    ("GGUF (llama.cpp)", lambda m: m.get("gguf", "not written")),
]
COST = [
    ("model", lambda m: m["name"]),
    ("non-embedding parameters", summary("non_embedding_parameters")),
    ("tokens seen", summary("tokens_seen")),
    ("tokens per parameter", summary("tokens_per_parameter")),
    ("training FLOPs", lambda m: f"{m['summary']['total_flops']:.3g}"),
    ("training time, steps (s)", summary("step_time_s")),
    ("training time, whole job (s)", summary("job_time_s")),
    ("tokens/s", summary("tokens_per_s")),
    ("MFU", lambda m: mfu_text(m["summary"])),
]
TOKENIZERS = [
    ("tokenizer", lambda t: t["name"]),
    ("type", lambda t: t["model_type"]),
    ("vocabulary (pieces)", vocabulary),
    ("characters per token", lambda t: t["chars_per_token"]),
    ("bytes per token", lambda t: t["bytes_per_token"]),
    ("byte-fallback share", lambda t: t["byte_fallback_share"]),
    ("vocabulary used (share)", lambda t: t["vocab_used_share"]),
    ("round-trip failures", lambda t: t["round_trip_failures"]),
    ("validation tokens", lambda t: t["tokens"]),
    ("most frequent pieces", lambda t: " ".join(repr(p) for p, _ in t["top_pieces"][:10])),
]
CLUSTERS = [
    ("survivor", lambda c: c["survivor"]),
    ("documents", lambda c: len(c["members"])),
    ("removed (estimated Jaccard similarity to the survivor)",
     lambda c: ", ".join(f"{r['id']} ({r['jaccard']:.2f}{', exact' if r['exact'] else ''})" for r in c["removed"])),
]  # fmt: skip


def pairs(*headers):
    """Columns for rows that are tuples already: the i-th header takes the i-th value."""
    return [(header, lambda row, i=i: row[i]) for i, header in enumerate(headers)]


LANGUAGES = [("language", lambda r: r[0]), ("documents", lambda r: r[1][0]), ("characters", lambda r: r[1][1])]


def data_tables(data):
    """The data funnel, drop reasons, skipped and repaired files, and duplicate clusters."""
    ingest, clean, dedup = data["ingest"], data["clean"], data["dedup"]["stats"]
    selected = [  # records a source's `where` (or a null text) dropped at ingest
        (reason, n, s["dropped_characters"][reason], "") for s in ingest for reason, n in s.get("dropped", {}).items()
    ]
    read = [
        (
            "read",
            *(
                sum(s[k] for s in ingest) + sum(r[i] for r in selected)
                for i, k in ((1, "documents"), (2, "characters"))
            ),
        )
    ]
    funnel = read * bool(selected) + [
        ("ingested", sum(s["documents"] for s in ingest), sum(s["characters"] for s in ingest)),
        ("after cleaning", sum(s["documents_out"] for s in clean), sum(s["characters_out"] for s in clean)),
        ("after dedup", dedup["documents_out"], dedup["characters_out"]),
    ]
    paragraphs = [p for p in data.get("paragraphs") or () if p]  # where dedup.paragraphs is on
    if paragraphs:
        dropped_docs = sum(p["documents_dropped"] for p in paragraphs)
        removed_chars = sum(p["characters_removed"] for p in paragraphs)
        funnel.append(
            (
                f"after paragraph dedup ({sum(p['paragraphs_removed'] for p in paragraphs):,} repeated paragraphs "
                f"removed, {dropped_docs:,} documents mostly repeats dropped: beyond MinHash)",
                dedup["documents_out"] - dropped_docs,
                dedup["characters_out"] - removed_chars,
            )
        )
    if data.get("filters"):
        documents, characters = filtered_out(data)
        funnel.append(("after the model-based filters", funnel[-1][1] - documents, funnel[-1][2] - characters))
    conversations = sum(s.get("conversations", 0) for s in clean)
    if conversations:  # the text rules judge prose (lmcore.data.clean.clean_part)
        funnel.insert(-1, ("of them conversations, which the text rules pass", conversations, ""))
    reasons = {}
    for s in clean:
        for reason, n in s["dropped"].items():
            count, chars, examples = reasons.get(reason, (0, 0, []))
            reasons[reason] = (
                count + n,
                chars + s["dropped_characters"][reason],
                examples + s["examples"].get(reason, []),
            )
    dropped = selected + [
        (reason, n, chars, " | ".join(f"{e['id']}: {e['excerpt'][:80]!r}" for e in examples[:3]))
        for reason, (n, chars, examples) in sorted(reasons.items())
    ]
    skipped = sorted({f"{s['source']}/{path}": why for s in ingest for path, why in s["skipped"].items()}.items())
    repaired = sorted(
        (f"{s['source']}/{path}", s["replaced_bytes"].get(path, 0), s.get("control_characters", {}).get(path, 0))
        for s in ingest
        for path in set(s.get("replaced_bytes", {})) | set(s.get("control_characters", {}))
    )
    languages = {}
    for s in clean:
        for language, (n, chars) in s.get("languages", {}).items():
            total = languages.setdefault(language, [0, 0])
            total[0], total[1] = total[0] + n, total[1] + chars

    def total(key, sub=None):
        return sum(s.get(key, {}).get(sub, 0) if sub else s.get(key, 0) for s in clean)

    edits = [
        ("mojibake repaired (clean.fix_text)", total("fixed_text")),
        ("email replaced (clean.pii)", total("pii", "email")),
        ("ip replaced (clean.pii)", total("pii", "ip")),
        ("URL list: allowed (clean.urls)", total("urls", "allowed")),
        ("URL list: without a url (clean.urls)", total("urls", "without a url")),
    ]
    return {
        "languages": table(sorted(languages.items(), key=lambda i: -i[1][1]), LANGUAGES),
        "edits": table([e for e in edits if e[1]], pairs("what", "count")),
        "funnel": table(funnel, pairs("stage", "documents", "characters")),
        "dropped": table(dropped, pairs("reason", "documents", "characters", "examples")),
        "skipped": table(skipped, pairs("file", "reason")),
        "repaired": table(repaired, pairs("file", "invalid UTF-8 sequences replaced", "control characters removed")),
        "clusters": table(data["dedup"]["clusters"][:50], CLUSTERS),
    }


FILTER_ROWS = [
    ("source", lambda r: r["source"]),
    ("filter", lambda r: r["scorer"]),
    ("keeps", lambda r: r["rule"]),
    ("documents in", lambda r: r["documents"]),
    ("dropped", lambda r: r["dropped"]),
    ("kept", lambda r: r["kept"]),
]
SCORE_AXES = {"quality": "classifier's score (probability of the positive class)", "perplexity": "bits per byte"}


def filter_section(data):
    """Per filtered source: each filter's rule and what it dropped, the classifier's held-out accuracy, and the
    scores' histogram with the kept range shaded."""
    rows, plots, classifiers = [], [], []
    for name, plan in sorted((data.get("filters") or {}).items()):
        parts = plan["parts"]
        documents = sum(p["documents"] for p in parts)
        kept = documents
        for scorer in plan["thresholds"]["scorers"]:
            dropped = sum(p["dropped"][scorer] for p in parts)
            kept -= dropped
            keep = {"share": plan["config"]["sample"]} if scorer == "sample" else plan["config"][scorer]["keep"]
            rule = ", ".join(f"{k} {v if k != 'buckets' else ' + '.join(v)}" for k, v in keep.items())
            rows.append(
                {
                    "source": name,
                    "scorer": scorer,
                    "rule": rule,
                    "documents": documents,
                    "dropped": dropped,
                    "kept": kept,
                }
            )
            documents = kept
            histogram = plan["thresholds"][scorer].get("histogram")
            if histogram:
                kept_bins = plan["thresholds"][scorer]["keep"].get("bins")
                plots.append(
                    markupsafe.Markup(
                        score_plot(f"{name}: {scorer} filter", histogram, SCORE_AXES[scorer], kept_bins, BINS)
                    )
                )
        if plan.get("classifier"):
            c = plan["classifier"]
            classifiers.append(
                (
                    name,
                    plan["config"]["quality"]["positive"],
                    plan["config"]["quality"]["negative"] or name,
                    c["held_out_accuracy"],
                    c["held_out_documents"]["positive"] + c["held_out_documents"]["negative"],
                    c["train_documents"]["positive"] + c["train_documents"]["negative"],
                )
            )
    return {
        "rows": table(rows, FILTER_ROWS),
        "classifiers": table(
            classifiers,
            pairs("source", "positive", "negative", "held-out accuracy", "held-out documents", "training documents"),
        ),
        "plots": plots,
    }


def filtered_out(data):
    """Documents and characters the model-based filters dropped, over every filtered source."""
    parts = [p for plan in (data.get("filters") or {}).values() for p in plan["parts"]]
    return sum(p["documents"] - p["kept"] for p in parts), sum(p["chars"] - p["kept_chars"] for p in parts)


def token_histogram(manifest, source):
    """Tokens per document of a source's training split, over its parts (shard statistics)."""
    found = [p["stats"]["train"].get("tokens_per_document") for p in manifest["parts"] if p["source"] == source]
    found = [h for h in found if h]
    return [sum(col) for col in zip(*found)] if found else None


def corpus_section(data):
    """Per source, the length of its documents in characters and words as cleaning took them in and kept them
    (plots), and its top domains; and how many duplicates dedup removed per cluster size."""
    sources = []
    for s in data.get("corpus") or ():
        if not s["shape"]["in"]:
            continue
        plots = [markupsafe.Markup(length_plot(s["source"], s["shape"], key)) for key in ("chars", "words")]
        for tok, manifest in (data.get("manifests") or {}).items():
            tokens = token_histogram(manifest, s["source"])
            if tokens:
                plots.append(markupsafe.Markup(histogram_plot(f"{s['source']}: {tok} tokens per document", tokens)))
        domains = table(
            sorted(s["shape"]["in"]["domains"].items(), key=lambda i: -i[1])[:10], pairs("domain", "documents")
        )
        sources.append({"name": s["source"], "plots": plots, "domains": domains if domains["rows"] else None})
    sizes = {}
    for cluster in data["dedup"].get("clusters", []):
        n = len(cluster["members"])
        sizes[n] = sizes.get(n, 0) + n - 1
    return {"sources": sources, "clusters": table(sorted(sizes.items()), pairs("cluster size", "documents removed"))}


def sweep_table(keys, done, models):
    """One sweep's finished cells ({model: {key: value}}): values, test loss and bits per byte, the best marked."""
    losses = {name: models[name]["eval"]["test"]["loss"] for name in done}
    best = min(losses, key=lambda n: (math.isnan(losses[n]), losses[n]), default=None)
    columns = [("model", lambda n: n)] + [(k, lambda n, k=k: done[n][k]) for k in keys]
    columns += [
        ("test loss (nats/token)", lambda n: losses[n]),
        ("test bits per byte", lambda n: models[n]["eval"]["test"]["bits_per_byte"]),
        ("", lambda n: "best" if n == best else ""),
    ]
    return table(done, columns), [(values, losses[name]) for name, values in done.items()]


def sweep_tables(config, models):
    """Per sweep: its grid's test losses, the best cell marked, and a plot for one or two keys."""
    sweeps = []
    for sweep, cells in sweep_models(config.get("sweeps")).items():
        keys = sorted(config["sweeps"][sweep]["grid"])
        done = {name: values for name, values in cells.items() if name in models}
        grid, points = sweep_table(keys, done, models)
        plot = sweep_plot(sweep, keys, points) if len(keys) <= 2 and done else None
        sweeps.append({"name": sweep, "table": grid, "plot": markupsafe.Markup(plot) if plot else None})
    return sweeps


SCORES = pairs("model", "task", "metric", "value", "stderr", "chance", "questions", "training documents overlapping")


def score_table(models, contamination=None):
    """lm-eval's scores of every scored model (results/evals/<model>.json), a row per task and metric; with
    decontamination, how many training documents share an n-gram with the task's data ("unchecked": its data
    is not local)."""

    def overlap(task):
        found = (contamination or {}).get(task)
        if contamination is None:
            return ""
        return "unchecked" if found is None or found["ngrams"] is None else found["documents"]

    rows = [
        (name, r["task"], r["metric"], r["value"], r["stderr"], r["chance"], r["n"], overlap(r["task"]))
        for name, m in models.items()
        for r in (m.get("scores") or {"scores": []})["scores"]
    ]
    return table(rows, SCORES) if rows else None


def ranking(models):
    """(name, test bits per byte) of the model of lowest test bits per byte, and the others', best first."""
    bpb = {name: m["eval"]["test"]["bits_per_byte"] for name, m in models.items()}
    return sorted(bpb.items(), key=lambda item: (math.isnan(item[1]), item[1]))  # a diverged model's nan last


def model_links(models):
    """Each model's folders (relative to results/, where the report is) and the commands that use it."""
    return [
        {
            "name": name,
            "folder": f"models/{name}/",
            "checkpoints": f"checkpoints/{name}/",
            "hf": f"hf/{name}/" if m.get("hf", "").startswith("ok") else None,
            "gguf": f"gguf/{name}.gguf" if m.get("gguf", "").startswith("ok") else None,
            "adapter": f"lora/{name}/" if m.get("adapter") else None,
            "sample": f'python -m lmcore generate results/models/{name} --prompt "..."',
            "resume": f"snakemake --cores 8 --rerun-incomplete results/models/{name}/summary.json",
        }
        for name, m in models.items()
    ]


def render(run, data, tokenizers, models):
    """run: {config, commit, rule_times}; data: {ingest: [...], clean: [...], dedup}; tokenizers: {name: stats};
    models: {name: {summary, metrics, eval, samples, hf, scores}}. The page is templates/report.html.j2, which only
    loops over what this gathers."""
    items = [{"name": name, **m} for name, m in models.items()]
    series = {name: m["metrics"] for name, m in models.items()}
    plots = [
        line_plot(series, x_key, y_key, title, logy)
        for x_key, y_key, title, logy in [
            ("step", "loss", "Train loss against steps", False),
            ("tokens", "loss", "Train loss against tokens", False),
            ("step", "val_loss", "Validation loss against steps", False),
            ("tokens", "val_loss", "Validation loss against tokens", False),
            ("step", "lr", "Learning rate", False),
            ("step", "grad_norm", "Gradient norm (before clipping)", True),
        ]
    ] + [size_plot(models)]
    dedup = data["dedup"]["stats"]
    return TEMPLATES.get_template("report.html.j2").render(
        host={
            "generated": datetime.datetime.now().isoformat(timespec="seconds"),
            "node": platform.node(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.system(),
        },
        commit=run["commit"],
        digest=config_digest(run["config"]),
        ranking=ranking(models),
        short_vocab=short_vocabularies(tokenizers),
        links=model_links(models),
        scores=score_table(models, data.get("contamination")),
        next_line=data.get("next_line"),
        quality=table(items, QUALITY),
        cost=table(items, COST),
        worse=[m["name"] for m in items if not beats_unigram(m)],
        peaks=[
            f"{m['name']} on {m['summary']['device']} ({m['summary']['precision'].removeprefix('torch.')}): "
            f"{m['summary']['peak_flops'] / 1e9:,.0f} GFLOP/s, {m['summary'].get('peak_source', 'measured')}"
            for m in items
        ],
        sweeps=sweep_tables(run["config"], models),
        per_source=source_table(run["config"], models),
        answers=answer_table(run["config"], models),
        preferences=preference_table(run["config"], models),
        conversations=conversation_samples(models),
        studies=[scaling_study(s, runs, models) for s, runs in scaling_models(run["config"].get("scaling")).items()],
        plots=[markupsafe.Markup(svg) for svg in plots],  # drawn by matplotlib, which escapes the text it writes
        data=data_tables(data),
        corpus=corpus_section(data),
        filters=filter_section(data),
        dedup={k: dedup[k] for k in ("documents_removed", "characters_removed")}
        | {"clusters": len(data["dedup"]["clusters"])},
        tokenizers=table([{"name": n, **t} for n, t in tokenizers.items()], TOKENIZERS),
        samples={
            name: [{**s, "completion": s["completion"].rstrip()} for s in m["samples"]] for name, m in models.items()
        },
        versions=table(sorted(versions().items()), pairs("package", "version")),
        rule_times=table(
            [(r, n, sec) for r, (n, sec) in sorted(run["rule_times"].items())], pairs("rule", "jobs", "seconds")
        ),
        config=json.dumps(run["config"], indent=2, sort_keys=True),
    )


STUDY_RUNS = [
    ("model", lambda r: r["model"]),
    ("shape", lambda r: r["shape"]),
    ("budget (FLOPs)", lambda r: f"{r['budget']:.3g}"),
    ("N", lambda r: r["N"]),
    ("D (tokens)", lambda r: r["D"]),
    ("tokens per parameter", lambda r: r["D"] / r["N"]),
    ("test loss (nats/token)", lambda r: r["loss"]),
]
STUDY_CURVES = [
    ("budget (FLOPs)", lambda c: f"{c['budget']:.3g}"),
    ("N_opt", lambda c: c.get("N_opt")),
    ("D_opt", lambda c: c.get("D_opt")),
    ("tokens per parameter", lambda c: c["D_opt"] / c["N_opt"] if "N_opt" in c else None),
    ("fitted loss at N_opt", lambda c: c.get("loss_opt")),
    ("no minimum because", lambda c: c.get("reason", "")),
]


def scaling_study(study, planned, models):
    """One IsoFLOP study's tables, fits and plots: `planned` is {model: (shape, budget)}, `models` what finished.
    N is the non-embedding parameter count, D the tokens seen, the loss the test loss."""
    runs = [
        {
            "model": name,
            "shape": shape,
            "budget": budget,
            "N": models[name]["summary"]["non_embedding_parameters"],
            "D": models[name]["summary"]["tokens_seen"],
            "loss": models[name]["eval"]["test"]["loss"],
        }
        for name, (shape, budget) in planned.items()
        if name in models
    ]
    result = fit(runs)
    curves = [{"budget": budget, **curve} for budget, curve in result["curves"].items()]
    return {
        "name": study,
        "runs": table(runs, STUDY_RUNS),
        "curves": table(curves, STUDY_CURVES),
        "a": result["a"],
        "b": result["b"],
        "prediction": result["prediction"],
        "law": result["law"],
        "plots": [markupsafe.Markup(isoflop_plot(study, runs, result))]
        + ([markupsafe.Markup(optima_plot(study, result))] if result["a"] is not None else []),
    }


def source_table(config, models):
    """Per model: what it trained on, the weights it started from and the test bits per byte of each source;
    None with a single source and no model continued from another, where nothing varies."""
    sources = sorted(config.get("sources", {}))
    entries = {name: config.get("models", {}).get(name, {}) for name in models}
    if len(sources) < 2 and not any(e.get("init_from") for e in entries.values()):
        return None

    def trains_on(name):
        mix = (entries[name].get("data") or {}).get("sources")
        return (
            ", ".join(f"{s} {w / sum(mix.values()):.0%}" for s, w in sorted(mix.items())) if mix else "all, by tokens"
        )

    def starts_from(name):
        init = entries[name].get("init_from") or {}
        return init.get("model") or init.get("hf") or "random"

    def bits_per_byte(source):
        return lambda name: models[name]["eval"]["test"].get("sources", {}).get(source, {}).get("bits_per_byte")

    columns = [("model", lambda name: name), ("trains on", trains_on), ("starts from", starts_from)]
    columns += [(f"{s}: test bits per byte", bits_per_byte(s)) for s in sources]
    columns += [("all: test bits per byte", lambda name: models[name]["eval"]["test"]["bits_per_byte"])]
    return table(models, columns)


def answer_table(config, models):
    """Per model that was scored on conversations: loss and bits per byte on the answers of the held-out
    conversations (the assistant's tokens only), what it trained on and started from; None without any."""
    scored = {n: m["eval"]["test"]["answers"] for n, m in models.items() if m["eval"]["test"].get("answers")}
    if not scored:
        return None
    entries = config.get("models", {})

    def starts_from(name):
        init = entries.get(name, {}).get("init_from") or {}
        return init.get("model") or init.get("hf") or "random"

    return table(
        scored,
        [
            ("model", lambda n: n),
            ("loss on", lambda n: entries.get(n, {}).get("loss", "all")),
            ("LoRA", lambda n: "rank {rank}".format(**entries[n]["lora"]) if entries.get(n, {}).get("lora") else ""),
            ("starts from", starts_from),
            ("answer tokens", lambda n: scored[n]["tokens"]),
            ("answer loss (nats/token)", lambda n: scored[n]["loss"]),
            ("answer bits per byte", lambda n: scored[n]["bits_per_byte"]),
        ],
    )


def preference_table(config, models):
    """Per model scored on held-out preference pairs: how often it prefers the chosen answer (by the answer's total
    log-probability and per token), how it trained; None without any."""
    scored = {n: m["eval"]["test"]["preferences"] for n, m in models.items() if m["eval"]["test"].get("preferences")}
    if not scored:
        return None
    entries = config.get("models", {})

    def trained(name):
        entry = entries.get(name, {})
        if entry.get("dpo"):
            return "DPO, beta {beta} against {reference[model]}".format(**entry["dpo"])
        return "SFT" if entry.get("loss") == "assistant" else "pretraining"

    return table(
        scored,
        [
            ("model", lambda n: n),
            ("trained by", trained),
            ("held-out pairs", lambda n: scored[n]["pairs"]),
            ("prefers the chosen (total log-prob)", lambda n: scored[n]["accuracy"]),
            ("prefers the chosen (per token)", lambda n: scored[n]["accuracy_per_token"]),
            ("mean margin (nats)", lambda n: scored[n]["margin"]),
        ],
    )


def conversation_samples(models):
    """The held-out conversations the models replied to, each with the data's reply and every model's."""
    shown = {}
    for name, m in models.items():
        for c in m.get("conversations") or ():
            key = json.dumps(c["messages"], sort_keys=True)
            entry = shown.setdefault(key, {"messages": c["messages"], "reference": c["reference"], "replies": []})
            entry["replies"] += [(name, preset, text) for preset, text in sorted(c["replies"].items())]
    return list(shown.values())


def rule_times(benchmarks_dir):
    """{rule: (jobs, seconds)} from Snakemake's benchmark files, benchmarks/<rule>[/...].tsv."""
    times = {}
    for path in glob.glob(os.path.join(benchmarks_dir, "**", "*.tsv"), recursive=True):
        rule = os.path.relpath(path, benchmarks_dir).split(os.sep)[0].removesuffix(".tsv")
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:
            n, s = times.get(rule, (0, 0.0))
            times[rule] = (n + 1, s + float(rows[-1]["s"]))
    return times


def hf_export(entry, exported_config):
    """'ok: llama' or 'ok: gpt2' for a model exported as a Hugging Face folder (the path of its
    config.json), or 'no: <why>' for a model entry whose options have no HF architecture."""
    arch, reason = architecture(entry)
    return "no: " + reason if arch is None else "ok: " + read_json(exported_config)["model_type"]


def gguf_export(entry, written, enabled):
    """'ok: llama' (or qwen3, gpt2) for a model written as a GGUF file, 'off' when gguf.enabled is false,
    or 'no: <why>' for a model entry that no llama.cpp graph computes (one with no HF architecture)."""
    arch, reason = architecture(entry)
    if written:
        return "ok: " + arch
    return "off (gguf: {enabled: false})" if not enabled else "no: " + reason


def samples_of(written):
    """{samples, conversations} of a model's results/samples/<model>.json."""
    return {"samples": written["samples"], "conversations": written.get("conversations", [])}


def filter_data(inputs, config):
    """{source: {config, thresholds, parts, classifier}} of each filtered source, from results/filter/<source>/."""
    filters = {}
    for path in getattr(inputs, "filter_thresholds", ()):
        name = os.path.basename(os.path.dirname(path))
        folder = os.path.dirname(path)
        classifier = os.path.join(folder, "classifier.json")
        filters[name] = {
            "config": config["sources"][name],
            "thresholds": read_json(path),
            "parts": [read_json(p) for p in inputs.filter_parts if os.path.dirname(p) == folder],
            "classifier": read_json(classifier) if classifier in inputs.filter_classifiers else None,
        }
    return filters


def build(inputs, config, tokenizer_names, model_names, benchmarks_dir="benchmarks"):
    """Read every stage's outputs (paths in `inputs`, as the report rule lists them) and render the HTML."""
    data = {
        "ingest": [read_json(path) for path in inputs.ingest],
        "clean": [read_json(p) for p in inputs.clean],
        "dedup": read_json(inputs.dedup),
        "next_line": read_json(inputs.next_line[0]) if getattr(inputs, "next_line", None) else None,
        "contamination": contamination_table(
            [read_json(p) for p in inputs.contamination], read_json(inputs.contamination_tasks[0])
        )
        if getattr(inputs, "contamination_tasks", None)
        else None,
        "paragraphs": [read_json(p)["paragraphs"] for p in inputs.dedup_parts],
        "filters": filter_data(inputs, config),
    }
    tokenizers = dict(zip(tokenizer_names, (read_json(p) for p in inputs.tokenizers)))
    exports = {os.path.basename(os.path.dirname(p)): p for p in inputs.exports}  # results/hf/<model>/config.json
    scores = {os.path.basename(p).removesuffix(".json"): read_json(p) for p in inputs.scores}  # results/evals/<m>.json
    ggufs = {os.path.basename(p).removesuffix(".gguf") for p in inputs.ggufs}  # results/gguf/<model>.gguf
    adapters = {os.path.basename(os.path.dirname(p)) for p in inputs.adapters}  # results/lora/<model>/...
    models = {
        name: {
            "summary": read_json(s),
            "metrics": list(read_jsonl(m)),
            "eval": read_json(e),
            **samples_of(read_json(x)),
            "hf": hf_export(config["models"][name], exports.get(name)),
            "gguf": gguf_export(config["models"][name], name in ggufs, config["gguf"]["enabled"]),
            "scores": scores.get(name),
            "adapter": name in adapters,
        }
        for name, s, m, e, x in zip(model_names, inputs.summaries, inputs.metrics, inputs.evals, inputs.samples)
    }
    run = {
        "config": config,
        "commit": git_commit(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "rule_times": rule_times(benchmarks_dir),
    }
    return render(run, data, tokenizers, models)
