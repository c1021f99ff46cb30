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
from lmcore.families import architecture
from lmcore.io import read_json, read_jsonl
from lmcore.report.plots import isoflop_plot, line_plot, optima_plot, size_plot, sweep_plot
from lmcore.scaling import fit

CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
td.n{text-align:right;white-space:nowrap}th{overflow-wrap:normal}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem;border-radius:4px;font-size:.85rem}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots>div{flex:1 1 480px;min-width:0}svg{max-width:100%;height:auto}
.warn{color:#a00;font-weight:bold}
.samples{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:.5rem}
"""


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


def render(run, data, tokenizers, models):
    """run: {config, commit, rule_times}; data: {ingest: [...], clean: [...], dedup}; tokenizers: {name: stats};
    models: {name: {summary, metrics, eval, samples}}. The page is templates/report.html.j2; this gathers its rows."""
    quality, cost, worse = [], [], []
    for name, m in models.items():
        s, e = m["summary"], m["eval"]
        beats = e["test"]["loss"] < e["baseline"]["loss"]  # False for NaN too
        if not beats:
            worse.append(name)
        quality.append(
            [
                name,
                s["parameters"],
                s["best_val_loss"],
                e["test"]["loss"],
                e["test"]["perplexity"],
                e["test"]["bits_per_byte"],
                e["baseline"]["perplexity"],
                e["baseline"]["bits_per_byte"],
                "yes" if beats else "NO",
                m.get("hf", "not exported"),
            ]
        )
        cost.append(
            [
                name,
                s["non_embedding_parameters"],
                s["tokens_seen"],
                s["tokens_per_parameter"],
                f"{s['total_flops']:.3g}",
                s["step_time_s"],
                s["job_time_s"],
                s["tokens_per_s"],
                mfu_text(s),
            ]
        )
    per_source = source_rows(run["config"], models)
    peaks = [
        f"{name} on {m['summary']['device']} ({m['summary']['precision'].removeprefix('torch.')}): "
        f"{m['summary']['peak_flops'] / 1e9:,.0f} GFLOP/s, {m['summary'].get('peak_source', 'measured')}"
        for name, m in models.items()
    ]

    sweeps = []
    for sweep, cells in sweep_models(run["config"].get("sweeps")).items():
        keys = sorted(run["config"]["sweeps"][sweep]["grid"])
        done = {name: values for name, values in cells.items() if name in models}
        losses = {name: models[name]["eval"]["test"]["loss"] for name in done}
        best = min(losses, key=lambda n: (math.isnan(losses[n]), losses[n]), default=None)
        rows = [
            [
                name,
                *values.values(),
                losses[name],
                models[name]["eval"]["test"]["bits_per_byte"],
                "best" if name == best else "",
            ]
            for name, values in done.items()
        ]
        plot = (
            sweep_plot(sweep, keys, [(values, losses[name]) for name, values in done.items()])
            if len(keys) <= 2 and done
            else None
        )
        sweeps.append(
            {
                "name": sweep,
                "headers": ["model", *keys, "test loss (nats/token)", "test bits per byte", ""],
                "rows": rows,
                "plot": markupsafe.Markup(plot) if plot else None,
            }
        )

    studies = [
        scaling_study(study, runs, models) for study, runs in scaling_models(run["config"].get("scaling")).items()
    ]

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
    ]
    plots.append(size_plot(models))

    ingest, clean, dedup = data["ingest"], data["clean"], data["dedup"]["stats"]
    funnel = [
        ["ingested", sum(s["documents"] for s in ingest), sum(s["characters"] for s in ingest)],
        ["after cleaning", sum(s["documents_out"] for s in clean), sum(s["characters_out"] for s in clean)],
        ["after dedup", dedup["documents_out"], dedup["characters_out"]],
    ]
    reasons = {}
    for s in clean:
        for reason, n in s["dropped"].items():
            count, chars, examples = reasons.get(reason, (0, 0, []))
            reasons[reason] = (
                count + n,
                chars + s["dropped_characters"][reason],
                examples + s["examples"].get(reason, []),
            )
    by_source = {s["source"]: s for s in ingest}
    repaired = sorted(
        {
            (s["source"], path)
            for s in ingest
            for key in ("replaced_bytes", "control_characters")
            for path in s.get(key, {})
        }
    )
    clusters = data["dedup"]["clusters"]

    return TEMPLATES.get_template(
        "report.html.j2"
    ).render(
        css=CSS,
        host={
            "generated": datetime.datetime.now().isoformat(timespec="seconds"),
            "node": platform.node(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.system(),
        },
        commit=run["commit"],
        digest=config_digest(run["config"]),
        quality=quality,
        cost=cost,
        worse=worse,
        peaks=peaks,
        sweeps=sweeps,
        per_source=per_source,
        studies=studies,
        plots=[markupsafe.Markup(svg) for svg in plots],  # drawn by matplotlib, which escapes the text it writes
        funnel=funnel,
        reasons=[
            [reason, n, chars, " | ".join(f"{e['id']}: {e['excerpt'][:80]!r}" for e in examples[:3])]
            for reason, (n, chars, examples) in sorted(reasons.items())
        ],
        skipped=sorted({f"{s['source']}/{path}": why for s in ingest for path, why in s["skipped"].items()}.items()),
        repaired=[
            [
                f"{source}/{path}",
                by_source[source]["replaced_bytes"].get(path, 0),
                by_source[source].get("control_characters", {}).get(path, 0),
            ]
            for source, path in repaired
        ],
        dedup={
            "clusters": len(clusters),
            "documents_removed": dedup["documents_removed"],
            "characters_removed": dedup["characters_removed"],
        },
        clusters=[
            [
                c["survivor"],
                len(c["members"]),
                ", ".join(f"{r['id']} ({r['jaccard']:.2f}{', exact' if r['exact'] else ''})" for r in c["removed"]),
            ]
            for c in clusters[:50]
        ],
        tokenizers=[
            [
                n,
                t["model_type"],
                vocabulary(t),
                t["chars_per_token"],
                t["bytes_per_token"],
                t["byte_fallback_share"],
                t["vocab_used_share"],
                t["round_trip_failures"],
                t["tokens"],
                " ".join(repr(p) for p, _ in t["top_pieces"][:10]),
            ]
            for n, t in tokenizers.items()
        ],
        samples={
            name: [{**s, "completion": s["completion"].rstrip()} for s in m["samples"]] for name, m in models.items()
        },
        versions=sorted(versions().items()),
        rule_times=[[r, n, sec] for r, (n, sec) in sorted(run["rule_times"].items())],
        config=json.dumps(run["config"], indent=2, sort_keys=True),
    )


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
    curves = []
    for budget, curve in result["curves"].items():
        if "N_opt" in curve:
            curves.append(
                [
                    f"{budget:.3g}",
                    curve["N_opt"],
                    curve["D_opt"],
                    curve["D_opt"] / curve["N_opt"],
                    curve["loss_opt"],
                    "",
                ]
            )
        else:
            curves.append([f"{budget:.3g}", None, None, None, None, curve["reason"]])
    return {
        "name": study,
        "runs": [
            [r["model"], r["shape"], f"{r['budget']:.3g}", r["N"], r["D"], r["D"] / r["N"], r["loss"]] for r in runs
        ],
        "curves": curves,
        "a": result["a"],
        "b": result["b"],
        "prediction": result["prediction"],
        "law": result["law"],
        "plots": [markupsafe.Markup(isoflop_plot(study, runs, result))]
        + ([markupsafe.Markup(optima_plot(study, result))] if result["a"] is not None else []),
    }


def source_rows(config, models):
    """Headers and rows of the per-source table (None with a single source): per model, what it trained on,
    the weights it started from and the test bits per byte of each source, or None where nothing varies."""
    sources = sorted(config.get("sources", {}))
    entries = {name: config.get("models", {}).get(name, {}) for name in models}
    if len(sources) < 2 and not any(e.get("init_from") for e in entries.values()):
        return None
    rows = []
    for name, m in models.items():
        e = entries[name]
        mix = (e.get("data") or {}).get("sources")
        trained_on = (
            ", ".join(f"{s} {w / sum(mix.values()):.0%}" for s, w in sorted(mix.items())) if mix else "all, by tokens"
        )
        init = e.get("init_from") or {}
        start = init.get("model") or init.get("hf") or "random"
        per = m["eval"]["test"].get("sources", {})
        rows.append(
            [
                name,
                trained_on,
                start,
                *(per[s]["bits_per_byte"] if s in per else None for s in sources),
                m["eval"]["test"]["bits_per_byte"],
            ]
        )
    return {
        "headers": [
            "model",
            "trains on",
            "starts from",
            *(f"{s}: test bits per byte" for s in sources),
            "all: test bits per byte",
        ],
        "rows": rows,
    }


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


def build(inputs, config, tokenizer_names, model_names, benchmarks_dir="benchmarks"):
    """Read every stage's outputs (paths in `inputs`, as the report rule lists them) and render the HTML."""
    data = {
        "ingest": [read_json(os.path.join(d, "stats.json")) for d in inputs.ingest],
        "clean": [read_json(p) for p in inputs.clean],
        "dedup": read_json(inputs.dedup),
    }
    tokenizers = dict(zip(tokenizer_names, (read_json(p) for p in inputs.tokenizers)))
    exports = {os.path.basename(os.path.dirname(p)): p for p in inputs.exports}  # results/hf/<model>/config.json
    models = {
        name: {
            "summary": read_json(s),
            "metrics": list(read_jsonl(m)),
            "eval": read_json(e),
            "samples": read_json(x),
            "hf": hf_export(config["models"][name], exports.get(name)),
        }
        for name, s, m, e, x in zip(model_names, inputs.summaries, inputs.metrics, inputs.evals, inputs.samples)
    }
    run = {
        "config": config,
        "commit": git_commit(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "rule_times": rule_times(benchmarks_dir),
    }
    return render(run, data, tokenizers, models)
