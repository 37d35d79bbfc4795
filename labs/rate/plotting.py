"""Figures of the labs (matplotlib with seaborn's style; written to PNG, no display needed)."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from labs.study import as_float as _f

__all__ = ["plot_sweep"]

_METRIC_LABEL = {
    "w2": "W2 to target (exact for LMC/ULMC; Gaussian lower bound otherwise)",
    "kl": "KL(law || target), exact",
    "cov_error": "||Cov - Cov_target||_F, exact",
    "marginal_w2": "1-D marginal W2 to target (pooled coordinates, quantiles)",
    "sliced_w2": "sliced W2 to exact samples",
    "mmd": "MMD^2 (unbiased) to exact samples",
    "ksd": "kernel Stein discrepancy^2 (IMQ)",
    "weak_m2": "|E|x|^2/d - exact|",
}




def _kappa(v) -> str:
    k = _f(v)
    return "" if math.isnan(k) else f"{k:g}"


def plot_sweep(rows, summary, cfg, path) -> None:
    """Error against gradient evaluations (or step size), log-log, one panel per target/metric."""
    sns.set_theme(style="whitegrid", context="notebook")
    bias = cfg.study == "bias"
    theorem = cfg.study == "theorem"
    keyf = lambda r: (r["target"], r["dim"], r["kappa"], r["metric"])  # noqa: E731
    panels = sorted({keyf(r) for r in rows if r["kind"] != "floor"})
    if not panels:
        return
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 4.2 * nrow), squeeze=False)
    from samplers import METHODS

    palette = dict(zip(METHODS, sns.color_palette("deep", max(10, len(METHODS)))))
    fits = {(f["target"], str(f["dim"]), _kappa(f["kappa"]), f["metric"], f["sampler"]): f
            for f in summary.get("fits", [])}
    for ax, panel in zip(axes.flat, panels):
        target, dim, kappa, metric = panel
        sub = [r for r in rows if keyf(r) == panel and r["status"] == "ok"]
        floor = [r for r in sub if r["kind"] == "floor"]
        runs = [r for r in sub if r["kind"] != "floor"]
        groups = {}
        for r in runs:
            g = (r["sampler"], r["K_ref"]) if theorem else (r["sampler"],)
            groups.setdefault(g, []).append(r)
        for g, rs in sorted(groups.items(), key=lambda kv: (kv[0][0], _f(kv[0][-1]))):
            sampler = g[0]
            xs = np.array([_f(r["step_size"] if (bias or theorem) else r["grad_evals"]) for r in rs])
            v = np.array([_f(r["value"]) for r in rs])
            lo = np.array([_f(r["ci_low"]) for r in rs])
            hi = np.array([_f(r["ci_high"]) for r in rs])
            order = np.argsort(xs)
            xs, v, lo, hi = xs[order], v[order], lo[order], hi[order]
            yerr = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
            label = sampler
            if theorem:
                alg = METHODS[sampler]
                base = (alg.base or sampler).upper()
                label = (f"{sampler.upper() + '(eta,K)' if alg.base else base + '(eta)'} "
                         f"vs {base}(eta/K), K={g[1]}")
            else:
                f = fits.get((target, str(dim), _kappa(kappa), metric, sampler))
                if f is not None and f["slope"] is not None:
                    label = f"{sampler}: slope {f['slope']:.2f} [{f['slope_ci'][0]:.2f}, {f['slope_ci'][1]:.2f}]"
                    xx = np.array(f["x_range"])  # the fitted line spans the points it used
                    ax.plot(xx, np.exp(f["intercept"]) * xx ** f["slope"], "--", color=palette.get(sampler), lw=1)
                elif f is not None:
                    label = f"{sampler}: no fit"
            ls = "-" if METHODS[sampler].base or not theorem else ":"
            ax.errorbar(xs, v, yerr=yerr, fmt="o" + ls, ms=4, capsize=2, color=palette.get(sampler) if not theorem else None,
                        label=label)
        if floor:
            fl = max(_f(r["ci_high"]) for r in floor)
            ax.axhline(fl, color="grey", ls=":", lw=1.2, label="noise floor (95% upper bound, exact samples)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("step size eta" if (bias or theorem) else "gradient evaluations per chain")
        ax.set_ylabel(_METRIC_LABEL.get(metric, metric) if not theorem else "distance to LMC(eta/K)", fontsize=8)
        k = f", kappa={kappa}" if kappa else ""
        n = runs[0]["chains"] if runs and metric not in ("w2", "kl", "cov_error") else "exact law"
        ax.set_title(f"{target} d={dim}{k}\n{metric}, chains={n}", fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if theorem:
        sched = f"K in {{{', '.join(map(str, cfg.Ks))}}}, horizon T fixed"
    elif cfg.k_schedule == "growing":
        sched = f"K=ceil({cfg.k_scale:g}/eta)"
    else:
        sched = f"K={cfg.k_fixed}"
    fig.suptitle(f"labs.rate_sweep --study {cfg.study}\nPLMC with {sched}; 95% intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
