"""Plots for the report, rendered by matplotlib to inline SVG."""

import io

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# No date and a fixed hash salt: the same run renders the same SVG.
plt.rcParams["svg.hashsalt"] = "lmcore"
SVG_METADATA = {"Date": None, "Creator": None}


def svg(fig):
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata=SVG_METADATA)
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline SVG needs neither


def line_plot(series, x_key, y_key, title, logy=False):
    """series: {model name: metrics rows}."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, rows in series.items():
        pts = [(r[x_key], r[y_key]) for r in rows if r.get(y_key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="." if y_key == "val_loss" else None, label=name)
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    return svg(fig)


def size_plot(models):
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, m in models.items():
        ax.scatter(m["summary"]["parameters"], m["eval"]["test"]["loss"])
        ax.annotate(name, (m["summary"]["parameters"], m["eval"]["test"]["loss"]))
    ax.set_xscale("log")
    ax.margins(0.2)  # room for the names beside the outermost points
    ax.set_xlabel("parameters")
    ax.set_ylabel("test loss (nats/token)")
    ax.set_title("Model size against test loss")
    ax.grid(alpha=0.3)
    return svg(fig)


def sweep_plot(sweep, keys, cells):
    """Test loss against a one- or two-key grid: `cells` is [({key: value}, test loss)]; with two
    keys, one line per value of the second. Numeric values spanning 10x or more get a log axis."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x_key, line_key = keys[0], keys[1] if len(keys) > 1 else None
    for line in sorted({c[line_key] for c, _ in cells}, key=str) if line_key else [None]:
        pts = sorted((c[x_key], loss) for c, loss in cells if line_key is None or c[line_key] == line)
        ax.plot(*zip(*pts), marker="o", label=f"{line_key} = {line}" if line_key else None)
    xs = [c[x_key] for c, _ in cells]
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in xs) and max(xs) >= 10 * min(xs):
        ax.set_xscale("log")
    ax.set_xlabel(x_key)
    ax.set_ylabel("test loss (nats/token)")
    ax.set_title(f"Sweep {sweep}")
    ax.grid(alpha=0.3)
    if line_key:
        ax.legend()
    return svg(fig)


def log_axes(fig, ax, title, xlabel):
    """A scaling plot's finish: log x axis, labels, grid, legend; the SVG."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return svg(fig)


def isoflop_plot(study, runs, result):
    """Test loss against N for each budget, with the fitted parabola (dashed) and its minimum (star)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (budget, curve) in enumerate(result["curves"].items()):
        pts = sorted((r["N"], r["loss"]) for r in runs if r["budget"] == budget)
        color = f"C{i % 10}"
        ax.plot(*zip(*pts), "o", color=color, label=f"C = {budget:.3g}")
        if curve["coefficients"]:
            ln_n = np.linspace(np.log(pts[0][0]), np.log(pts[-1][0]), 100)
            ax.plot(np.exp(ln_n), np.polyval(curve["coefficients"], ln_n), "--", color=color)
        if "N_opt" in curve:
            ax.plot(curve["N_opt"], curve["loss_opt"], "*", color=color, markersize=14, markeredgecolor="black")
    ax.set_ylabel("test loss (nats/token)")
    return log_axes(fig, ax, f"{study}: IsoFLOP curves", "N (non-embedding parameters)")


def optima_plot(study, result):
    """N_opt and D_opt against C on log axes, the fitted power laws extended to the predicted budget."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    found = [(c, curve["N_opt"], curve["D_opt"]) for c, curve in result["curves"].items() if "N_opt" in curve]
    c = np.array([f[0] for f in found])
    line = np.geomspace(c.min(), result["prediction"]["budget"], 50)
    for i, (key, label) in enumerate([("N", "N_opt (parameters)"), ("D", "D_opt (tokens)")]):
        exponent, k = result["fits"][key]
        ax.plot(c, [f[1 + i] for f in found], "o", color=f"C{i}", label=f"{label} ∝ C^{exponent:.2f}")
        ax.plot(line, k * line**exponent, "--", color=f"C{i}")
        ax.plot(
            result["prediction"]["budget"],
            result["prediction"][key],
            "*",
            color=f"C{i}",
            markersize=14,
            markeredgecolor="black",
        )
    ax.set_yscale("log")
    return log_axes(fig, ax, f"{study}: compute-optimal N and D (star: 10x the largest budget)", "C (training FLOPs)")


def length_plot(source, shapes, key):
    """The distribution of `key` (chars, words, lines) per document of a source, as cleaning took it in and
    as it kept it."""
    series = {"in": shapes["in"][key], "kept": shapes["out"][key]}
    return histogram_plot(f"{source}: {key} per document", series, f"{key} per document")


def histogram_plot(title, series, xlabel="tokens per document"):
    """Counts per power-of-two bin (lmcore.data.stats: bin k holds [2^(k-1), 2^k)) as steps on a log axis;
    `series` is {label: counts} or one list of counts."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, counts in series.items() if isinstance(series, dict) else [(None, series)]:
        pts = [(2**k if k else 0.5, n) for k, n in enumerate(counts) if n]
        if pts:
            ax.step(*zip(*pts), where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel(f"{xlabel} (bins of powers of two)")
    ax.set_ylabel("documents")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if isinstance(series, dict):
        ax.legend()
    return svg(fig)


def score_plot(title, histogram, xlabel, kept_bins=None, bins=10_000):
    """A filter's scores over a source (lmcore.data.quality.plot_histogram), the kept range shaded (`kept_bins`,
    [first, last] pairs of the thresholds' `bins` bins over histogram["scale"])."""
    counts = histogram["counts"]
    edges = np.linspace(*histogram["range"], len(counts) + 1)
    lo, hi = histogram["scale"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.stairs(counts, edges, fill=True, alpha=0.6)
    ax.set_xlim(*histogram["range"])
    for first, last in kept_bins or ():
        ax.axvspan(lo + (hi - lo) * first / bins, lo + (hi - lo) * (last + 1) / bins, color="green", alpha=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("documents")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return svg(fig)
