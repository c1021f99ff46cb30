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
