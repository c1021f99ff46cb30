"""Plots for the report, rendered by matplotlib to inline SVG."""
import io

import matplotlib

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


