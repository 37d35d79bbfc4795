"""Figures of ``labs.diffusion_sweep`` (matplotlib with seaborn's style, written to PNG)."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from labs.study import as_float as _f

__all__ = ["plot_error_vs_calls", "plot_samples_2d"]

_METRIC_LABEL = {
    "sliced_w2": "sliced W2 to exact data samples",
    "w2": "exact W2 to exact data (subsample)",
    "mmd": "MMD^2 (unbiased) to exact data",
}




def plot_error_vs_calls(rows, summary, cfg, path, sampler_label=str) -> None:
    """Error against network calls per sample, log-log: one panel per (target, metric).

    Each sampler is a line with its 95% intervals; Poisson-midpoint DDPM is drawn at its mean
    number of calls with a horizontal bar of one standard deviation of the calls.  The grey band
    is the noise floor (95% prediction interval of the metric between two exact samples).  The y
    range follows the values: a whisker whose interval reaches 0 runs off the bottom.  Points
    whose value is not positive (MMD^2 is unbiased and may be < 0) cannot be drawn on a log axis
    and are left out of the picture (they are in results.csv).  ``sampler_label`` names a
    sampler's line in the legend.
    """

    sns.set_theme(style="whitegrid", context="notebook")
    targets = [t for t in cfg.targets if any(r["target"] == t for r in rows)]
    mets = list(cfg.metrics)
    if not targets:
        return
    fig, axes = plt.subplots(len(targets), len(mets), figsize=(5.0 * len(mets), 4.0 * len(targets)), squeeze=False)
    palette = dict(zip(cfg.samplers, sns.color_palette("tab10", len(cfg.samplers))))
    for i, target in enumerate(targets):
        for j, metric in enumerate(mets):
            ax = axes[i, j]
            sub = [r for r in rows if r["target"] == target and r["metric"] == metric and r["status"] == "ok"]
            floor = [r for r in sub if r["kind"] == "floor"]
            shown = []  # drawn values: they set the y range (whiskers down to 0 run off the axis)
            for label in cfg.samplers:
                rs = [r for r in sub if r["kind"] == "run" and r["sampler"] == label]
                if not rs:
                    continue
                x = np.array([_f(r["nfe"]) for r in rs])
                v = np.array([_f(r["value"]) for r in rs])
                lo = np.array([_f(r["ci_low"]) for r in rs])
                hi = np.array([_f(r["ci_high"]) for r in rs])
                xs = np.array([_f(r["nfe_sd"]) for r in rs])
                o = np.argsort(x)
                x, v, lo, hi, xs = x[o], v[o], lo[o], hi[o], xs[o]
                keep = v > 0
                shown.extend(v[keep].tolist())
                yerr = np.vstack([np.clip(v - np.maximum(lo, v * 1e-6), 0, None), np.clip(hi - v, 0, None)])[:, keep]
                pm = label.startswith("pm_")
                ax.errorbar(x[keep], v[keep], yerr=yerr, xerr=xs[keep] if pm else None, fmt=("s-" if pm else "o-"),
                            ms=4, lw=1.6 if pm else 1.0, capsize=2, color=palette[label], label=sampler_label(label))
            if floor:
                f = floor[0]
                lo, hi = max(_f(f["ci_low"]), 0.0), _f(f["ci_high"])
                if hi > 0:
                    ax.axhspan(lo if lo > 0 else hi * 1e-3, hi, color="grey", alpha=0.25,
                               label="noise floor (exact vs exact, 95% PI)")
            ax.axvspan(50, 80, color="gold", alpha=0.12)
            ax.set_xscale("log")
            ax.set_yscale("log")
            if shown:
                top = max(shown)
                if floor and _f(floor[0]["ci_high"]) > 0:
                    top = max(top, _f(floor[0]["ci_high"]))
                ax.set_ylim(min(shown) / 3.0, top * 3.0)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("network calls per sample")
            ax.set_ylabel(_METRIC_LABEL.get(metric, metric), fontsize=8)
            dim = sub[0]["dim"] if sub else "?"
            n = next((r["n_points"] for r in sub if r["kind"] == "run"), "?")
            ax.set_title(f"{target} d={dim}: {metric} on {n} points", fontsize=9)
            if i == 0 and j == 0:
                ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(f"labs.diffusion_sweep: error vs network calls on exact scores ({cfg.schedule} schedule, "
                 f"T={cfg.T}, {cfg.chains} samples per cell; 95% intervals; gold band: 50-80 calls)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples_2d(samples: dict, cfg, path) -> None:
    """A scatter of 2-D samples per sampler (the first panel is exact data)."""
    sns.set_theme(style="white", context="notebook")
    names = list(samples)
    ncol = min(5, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 3.1 * nrow), squeeze=False)
    ref = samples[names[0]]
    lim = 1.3 * float(np.abs(ref).max())
    for ax, name in zip(axes.flat, names):
        x = samples[name]
        ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.5, color="C0" if name == names[0] else "C3", rasterized=True)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"ring target: {len(ref)} samples per sampler from the same exact x_T "
                 f"({cfg.schedule} schedule, T={cfg.T})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
