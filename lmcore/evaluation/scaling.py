"""Compute-optimal scaling from an IsoFLOP study (Hoffmann et al. 2022, "Chinchilla").

Each run has a budget C (training FLOPs), N (non-embedding parameters, the N of C = 6ND) and D
(tokens seen), and a final loss L.

Approach 2: per budget, fit L = p2 (ln N)^2 + p1 ln N + p0 over its runs; an interior minimum
(p2 > 0, ln N_opt = -p1 / 2 p2 within the runs' ln N) gives N_opt(C), and D_opt(C) from the runs'
line of ln D against ln N at ln N_opt. Then N_opt = k_N C^a and D_opt = k_D C^b by least squares
in log space (Chinchilla: a = 0.49, b = 0.51).

Approach 3: L(N, D) = E + A / N^α + B / D^β by least squares; for fixed (α, β) the loss is linear
in (E, A, B), so a grid over (α, β), refined, solves it without a general optimiser. The
compute-optimal allocation it implies has a = β / (α + β), b = α / (α + β).

`plan` gives each run's N and D before any training, from the same count the loop uses.
"""

import math

import numpy as np

from lmcore.config import scaling_models

MIN_SHAPES = 3  # a parabola through fewer points has no residual to judge it by
MIN_RUNS_FOR_LAW = 8  # approach 3 fits 5 numbers


def plan(config):
    """[{model, study, shape, budget, N, D}] for every run of every scaling study of a prepared config:
    N from the model built on the meta device (no memory), D = budget / flops_per_token, as in training."""
    import torch

    from lmcore.model.config import ModelConfig
    from lmcore.model.gpt import GPT, count_parameters, flops_per_token
    from lmcore.train.config import read_entry

    rows = []
    for study, runs in scaling_models(config.get("scaling")).items():
        sizes = {}  # shape -> (N, flops per token): the same at every budget
        for name, (shape, budget) in runs.items():
            if shape not in sizes:
                entry = config["models"][name]
                with torch.device("meta"):
                    cfg = ModelConfig(
                        vocab_size=config["tokenizers"][entry["tokenizer"]]["vocab_size"], **read_entry(entry)[0]
                    )
                    n = count_parameters(GPT(cfg))["non_embedding_parameters"]
                sizes[shape] = n, flops_per_token(cfg, n)
            n, token_flops = sizes[shape]
            rows.append(
                {"model": name, "study": study, "shape": shape, "budget": budget, "N": n, "D": budget / token_flops}
            )
    return rows


def isoflop_minimum(runs):
    """The parabola through one budget's runs ({N, D, loss}) and its minimum:
    {coefficients, N_opt, D_opt} or {coefficients, reason} where there is no interior minimum."""
    runs = [r for r in runs if math.isfinite(r["loss"])]
    sizes = len({r["N"] for r in runs})
    if sizes < MIN_SHAPES:
        return {
            "coefficients": None,
            "reason": f"{sizes} finished run(s) of distinct size; a parabola needs {MIN_SHAPES}",
        }
    ln_n = np.log([r["N"] for r in runs])
    p2, p1, p0 = np.polyfit(ln_n, [r["loss"] for r in runs], 2)
    fit = {"coefficients": [float(p2), float(p1), float(p0)]}
    if p2 <= 0:  # the parabola opens downwards: its only extremum is a maximum
        best = min(runs, key=lambda r: r["loss"])["N"]
        side = (
            "smallest"
            if best == min(r["N"] for r in runs)
            else "largest"
            if best == max(r["N"] for r in runs)
            else None
        )
        where = (
            f"lowest at the {side} shape: add a {'smaller' if side == 'smallest' else 'larger'} one"
            if side
            else "not convex"
        )
        return {**fit, "reason": f"the parabola has no minimum; the loss is {where}"}
    x = -p1 / (2 * p2)
    if not ln_n.min() < x < ln_n.max():
        side = "smallest" if x <= ln_n.min() else "largest"
        return {
            **fit,
            "reason": f"the minimum lies beyond the {side} shape: add a {side.removesuffix('est')}er one",
        }
    slope, intercept = np.polyfit(ln_n, np.log([r["D"] for r in runs]), 1)  # on an IsoFLOP curve, D falls as N grows
    return {
        **fit,
        "N_opt": float(math.exp(x)),
        "D_opt": float(math.exp(intercept + slope * x)),
        "loss_opt": float(np.polyval([p2, p1, p0], x)),
    }


def power_law(c, y):
    """(exponent, coefficient) of y = coefficient * c^exponent, by least squares on the logs."""
    exponent, log_k = np.polyfit(np.log(c), np.log(y), 1)
    return float(exponent), float(math.exp(log_k))


EXPONENTS = np.arange(0.02, 1.5, 0.02)  # the grid alpha and beta are searched on


def fit_loss_law(runs, exponents=EXPONENTS):
    """{E, A, alpha, B, beta} of L = E + A / N^alpha + B / D^beta with E, A, B >= 0 by least squares, and
    the a and b it implies; None where no grid point gives non-negative (E, A, B)."""
    n = np.array([r["N"] for r in runs], dtype=np.float64)
    d = np.array([r["D"] for r in runs], dtype=np.float64)
    loss = np.array([r["loss"] for r in runs], dtype=np.float64)

    def best(alphas, betas):
        found = None
        for alpha in alphas:
            for beta in betas:
                x = np.stack(
                    [np.ones_like(n), n**-alpha, d**-beta], axis=1
                )  # (runs, 3): the law is linear in (E, A, B)
                coef, *_ = np.linalg.lstsq(x, loss, rcond=None)
                if (coef < 0).any():
                    continue
                sse = float(((x @ coef - loss) ** 2).sum())
                if found is None or sse < found[0]:
                    found = (sse, float(coef[0]), float(coef[1]), float(alpha), float(coef[2]), float(beta))
        return found

    coarse = best(exponents, exponents)
    if coarse is None:
        return None
    step = exponents[1] - exponents[0]
    _, _, _, alpha, _, beta = coarse
    fine = best(
        np.linspace(max(alpha - step, 1e-3), alpha + step, 21), np.linspace(max(beta - step, 1e-3), beta + step, 21)
    )
    _, e, a, alpha, b, beta = min(found for found in (coarse, fine) if found)
    return {
        "E": e,
        "A": a,
        "alpha": alpha,
        "B": b,
        "beta": beta,
        "a": beta / (alpha + beta),
        "b": alpha / (alpha + beta),
    }


def fit(runs):
    """The whole analysis of one study: runs are [{budget, N, D, loss}]. Returns per-budget parabolas,
    the exponents a and b where two budgets or more have a minimum, the N and D predicted for 10x
    the largest budget, and approach 3's law where there are enough runs."""
    budgets = sorted({r["budget"] for r in runs})
    curves = {c: isoflop_minimum([r for r in runs if r["budget"] == c]) for c in budgets}
    optima = [(c, curve["N_opt"], curve["D_opt"]) for c, curve in curves.items() if "N_opt" in curve]
    result = {"curves": curves, "a": None, "b": None, "fits": None, "prediction": None, "law": None}
    if len(optima) >= 2:
        c, n_opt, d_opt = (np.array(v) for v in zip(*optima))
        result["a"], k_n = power_law(c, n_opt)
        result["b"], k_d = power_law(c, d_opt)
        target = 10 * max(budgets)
        result["prediction"] = {"budget": target, "N": k_n * target ** result["a"], "D": k_d * target ** result["b"]}
        result["fits"] = {"N": (result["a"], k_n), "D": (result["b"], k_d)}
    finished = [r for r in runs if math.isfinite(r["loss"])]
    if len(finished) >= MIN_RUNS_FOR_LAW:
        result["law"] = fit_loss_law(finished)
    return result
