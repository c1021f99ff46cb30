"""The run report's page: one self-contained HTML file (inline SVG plots, no network needed to view it).

Every string that came from the corpus, a config or a model is HTML-escaped.
"""
import csv
import datetime
import glob
import hashlib
import html
import json
import os
import platform
import re
import subprocess

from lmcore.io import read_json, read_jsonl
from lmcore.report.plots import line_plot, size_plot

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


def esc(value):
    return html.escape(str(value), quote=True)


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


def cell(value):
    """A table cell: figures right-aligned on one line, text left-aligned and wrapped."""
    text = fmt(value)
    number = not isinstance(value, str) or NUMBER.fullmatch(text)
    return f"<td class='n'>{esc(text)}</td>" if number else f"<td>{esc(text)}</td>"


def table(headers, rows):
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(map(cell, row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def mfu_text(summary):
    """MFU as a percentage, or None where there is none or it exceeds 1 (a peak measured too low)."""
    mfu = summary.get("mfu")
    return f"{mfu:.1%}" if mfu is not None and 0 <= mfu <= 1 else None


def vocabulary(stats):
    """'4,096', or '20,943 of 100,000 requested' where the corpus gave fewer pieces."""
    requested = stats.get("requested_vocab_size", stats["vocab_size"])
    return f"{stats['vocab_size']:,}" if stats["vocab_size"] == requested else f"{stats['vocab_size']:,} of {requested:,} requested"


def config_digest(config):
    """The first 12 hex digits of the sha256 of the resolved config: equal digests, equal runs."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def git_commit(folder):
    try:
        return subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def versions():
    import numpy
    import sentencepiece
    import snakemake
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "sentencepiece": sentencepiece.__version__, "snakemake": snakemake.__version__}


def render(run, data, tokenizers, models):
    """run: {config, commit, rule_times}; data: {ingest: [...], clean: [...], dedup}; tokenizers: {name: stats};
    models: {name: {summary, metrics, eval, samples}}."""
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>Language model run report</title><style>{CSS}</style></head><body>"]
    parts.append("<h1>Language model run report</h1>")
    parts.append(f"<p>Generated {esc(datetime.datetime.now().isoformat(timespec='seconds'))} on {esc(platform.node())} "
                 f"({esc(platform.machine())}, {os.cpu_count()} CPUs, {esc(platform.processor() or platform.system())}), "
                 f"commit {esc(run['commit'])}, config digest {esc(config_digest(run['config']))}.</p>")

    parts.append("<h2>Models</h2>")
    quality, cost, worse = [], [], []
    for name, m in models.items():
        s, e = m["summary"], m["eval"]
        beats = e["test"]["loss"] < e["baseline"]["loss"]  # False for NaN too
        if not beats:
            worse.append(name)
        quality.append([name, s["parameters"], s["best_val_loss"], e["test"]["loss"], e["test"]["perplexity"], e["test"]["bits_per_byte"],
                        e["baseline"]["perplexity"], e["baseline"]["bits_per_byte"], "yes" if beats else "NO"])
        cost.append([name, s["non_embedding_parameters"], s["tokens_seen"], s["tokens_per_parameter"], f"{s['total_flops']:.3g}",
                     s["wall_time_s"], s["tokens_per_s"], mfu_text(s)])
    parts.append(table(["model", "parameters", "best validation loss (nats/token)", "test loss (nats/token)", "test perplexity",
                        "test bits per byte", "unigram test perplexity", "unigram test bits per byte", "beats unigram"], quality))
    if worse:
        parts.append(f"<p class='warn'>Not better than the unigram baseline: {esc(', '.join(worse))}. Such a model has learnt "
                     f"nothing a token count does not know; look at its loss curve (too high a learning rate, too few steps).</p>")
    parts.append("<p>Test loss in nats per token; bits per byte compare models across tokenizers. Unigram: token "
                 "frequencies counted on the train split, scored on the same test tokens.</p><h3>Training cost</h3>")
    parts.append(table(["model", "non-embedding parameters", "tokens seen", "tokens per parameter", "training FLOPs",
                        "training time (s)", "tokens/s", "MFU"], cost))
    peaks = "; ".join(f"{name} on {m['summary']['device']} ({m['summary']['precision'].removeprefix('torch.')}): "
                      f"{m['summary']['peak_flops'] / 1e9:,.0f} GFLOP/s, {m['summary'].get('peak_source', 'measured')}"
                      for name, m in models.items())
    parts.append(f"<p>FLOPs = (6 N + 12 L d T) x tokens seen (N non-embedding parameters). MFU (model FLOP/s utilisation) "
                 f"is the model's FLOP/s over the device's peak, {esc(peaks)}. An MFU above 100% would mean the peak "
                 f"was measured too low, and is not shown.</p>")

    parts.append("<h2>Training curves</h2><div class='plots'>")
    series = {name: m["metrics"] for name, m in models.items()}
    for x_key, y_key, title, logy in [("step", "loss", "Train loss against steps", False), ("tokens", "loss", "Train loss against tokens", False),
                                      ("step", "val_loss", "Validation loss against steps", False), ("tokens", "val_loss", "Validation loss against tokens", False),
                                      ("step", "lr", "Learning rate", False), ("step", "grad_norm", "Gradient norm (before clipping)", True)]:
        parts.append(f"<div>{line_plot(series, x_key, y_key, title, logy)}</div>")
    parts.append(f"<div>{size_plot(models)}</div></div>")

    parts.append("<h2>Data funnel</h2>")
    ingest = data["ingest"]
    clean = data["clean"]
    dedup = data["dedup"]["stats"]
    parts.append(table(["stage", "documents", "characters"], [
        ["ingested", sum(s["documents"] for s in ingest), sum(s["characters"] for s in ingest)],
        ["after cleaning", sum(s["documents_out"] for s in clean), sum(s["characters_out"] for s in clean)],
        ["after dedup", dedup["documents_out"], dedup["characters_out"]],
    ]))
    reasons = {}
    for s in clean:
        for reason, n in s["dropped"].items():
            count, chars, examples = reasons.get(reason, (0, 0, []))
            reasons[reason] = (count + n, chars + s["dropped_characters"][reason], examples + s["examples"].get(reason, []))
    if reasons:
        rows = [[reason, n, chars, " | ".join(f"{e['id']}: {e['excerpt'][:80]!r}" for e in examples[:3])]
                for reason, (n, chars, examples) in sorted(reasons.items())]
        parts.append("<h3>Dropped by cleaning</h3>" + table(["reason", "documents", "characters", "examples"], rows))
    skipped = {f"{s['source']}/{path}": why for s in ingest for path, why in s["skipped"].items()}
    if skipped:
        parts.append("<h3>Files skipped at ingest</h3>" + table(["file", "reason"], sorted(skipped.items())))
    repaired = sorted({(s["source"], path) for s in ingest for key in ("replaced_bytes", "control_characters") for path in s.get(key, {})})
    if repaired:
        by_source = {s["source"]: s for s in ingest}
        rows = [[f"{source}/{path}", by_source[source]["replaced_bytes"].get(path, 0), by_source[source].get("control_characters", {}).get(path, 0)]
                for source, path in repaired]
        parts.append("<h3>Files repaired at ingest</h3>" + table(["file", "invalid UTF-8 sequences replaced", "control characters removed"], rows))
    clusters = data["dedup"]["clusters"]
    parts.append(f"<h3>Duplicate clusters: {len(clusters)}, {dedup['documents_removed']} documents and "
                 f"{dedup['characters_removed']:,} characters removed</h3>")
    if clusters:
        rows = [[c["survivor"], len(c["members"]), ", ".join(f"{r['id']} ({r['jaccard']:.2f}{', exact' if r['exact'] else ''})" for r in c["removed"])]
                for c in clusters[:50]]
        parts.append(table(["survivor", "documents", "removed (estimated Jaccard similarity to the survivor)"], rows))

    parts.append("<h2>Tokenizers</h2>")
    parts.append(table(["tokenizer", "type", "vocabulary (pieces)", "characters per token", "bytes per token", "byte-fallback share",
                        "vocabulary used (share)", "round-trip failures", "validation tokens", "most frequent pieces"],
                       [[n, t["model_type"], vocabulary(t), t["chars_per_token"], t["bytes_per_token"], t["byte_fallback_share"],
                         t["vocab_used_share"], t["round_trip_failures"], t["tokens"], " ".join(repr(p) for p, _ in t["top_pieces"][:10])]
                        for n, t in tokenizers.items()]))

    parts.append("<h2>Samples</h2>")
    for name, m in models.items():
        parts.append(f"<h3>{esc(name)}</h3><div class='samples'>")
        for s in m["samples"]:
            parts.append(f"<div><b>{esc(s['preset'])}</b> {esc(json.dumps(s['settings'], sort_keys=True))}<pre><b>{esc(s['prompt'])}</b>{esc(s['completion'].rstrip())}</pre></div>")
        parts.append("</div>")

    parts.append("<h2>Run</h2>")
    parts.append(table(["package", "version"], sorted(versions().items())))
    if run["rule_times"]:
        parts.append("<h3>Wall time per rule</h3>" + table(["rule", "jobs", "seconds"], [[r, n, s] for r, (n, s) in sorted(run["rule_times"].items())]))
    parts.append(f"<h3>Configuration</h3><pre>{esc(json.dumps(run['config'], indent=2, sort_keys=True))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


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


def build(inputs, config, tokenizer_names, model_names, benchmarks_dir="benchmarks"):
    """Read every stage's outputs (paths in `inputs`, as the report rule lists them) and render the HTML."""
    data = {
        "ingest": [read_json(os.path.join(d, "stats.json")) for d in inputs.ingest],
        "clean": [read_json(p) for p in inputs.clean],
        "dedup": read_json(inputs.dedup),
    }
    tokenizers = dict(zip(tokenizer_names, (read_json(p) for p in inputs.tokenizers)))
    models = {
        name: {"summary": read_json(s), "metrics": list(read_jsonl(m)), "eval": read_json(e), "samples": read_json(x)}
        for name, s, m, e, x in zip(model_names, inputs.summaries, inputs.metrics, inputs.evals, inputs.samples)
    }
    run = {"config": config, "commit": git_commit(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "rule_times": rule_times(benchmarks_dir)}
    return render(run, data, tokenizers, models)
