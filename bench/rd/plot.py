"""The figures: PSNR and MS-SSIM against real bpp, and encode seconds against bpp."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from bench import metrics
from bench.rd.analysis import Analysis
from bench.rd.report import plural

STYLES = {"paper": dict(marker="s", color="black", linestyle="--"), "jpeg": dict(color="tab:red"),
          "webp": dict(color="tab:green"), "avif": dict(color="tab:purple"), "jpeg2000": dict(color="tab:brown"),
          "jxl": dict(color="tab:cyan"), "heif": dict(color="tab:olive")}
Points = tuple[list[float], list[float]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, on machines without a display
    import matplotlib.pyplot as plt

    return plt


def write_plots(a: Analysis, rd_path: Path, time_path: Path) -> dict[str, Path]:
    """The RD plot (PSNR and MS-SSIM vs bpp) and the encode-time plot; returns the files written."""
    lo, hi = min(a.rates), max(a.rates)
    grid = np.geomspace(lo, hi, 40) if hi > lo else np.array([lo])
    _rd_figure(a, grid, rd_path)
    _time_figure(a, grid, time_path)
    return {"RD: PSNR and MS-SSIM vs bpp": rd_path, "Encode time vs bpp": time_path}


def _rate_axis(ax, rates: list[float]) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(rates)
    ax.set_xticklabels([f"{r:g}" for r in rates])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bits per pixel")


def _rd_figure(a: Analysis, grid: np.ndarray, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, kind, ylabel in ((axes[0], "psnr", "PSNR (dB, RGB)"), (axes[1], "ms_ssim", "MS-SSIM")):
        for s in a.series:
            xs, ys = _points(a, s, kind, grid)
            if not xs:
                continue
            style = STYLES.get(s, dict(marker="o", linewidth=2))
            if not s.startswith("ours:") and s != "paper":
                style = dict(style, marker=None)
            ax.plot(xs, ys, label=a.labels[s], **style)
        _rate_axis(ax, a.rates)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend()
    axes[0].set_title(f"Rate–distortion, average over {plural(len(a.images), 'image')}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _points(a: Analysis, series: str, kind: str, grid: np.ndarray) -> Points:
    if series.startswith("ours:"):
        return _ours_points(a, series, kind)
    if series == "paper":
        return _paper_points(a, kind)
    return _on_grid(grid, lambda r: a.average(kind, series, r))


def _on_grid(grid: np.ndarray, value: Callable[[float], float | None]) -> Points:
    """``value`` at the rates of ``grid`` where it has one (a sweep's curve within its range)."""
    xs, ys = [], []
    for r in grid:
        v = value(float(r))
        if v is not None:
            xs.append(float(r))
            ys.append(v)
    return xs, ys


def _ours_points(a: Analysis, series: str, kind: str) -> Points:
    """The real points: mean real bpp and mean metric per target, where every image has a finite value."""
    xs, ys = [], []
    for rate in a.rates:
        got = a.ours_at(series, rate)
        if all(got):
            vals = [g.get(kind) for g in got]
            if all(v is not None and math.isfinite(v) for v in vals):
                xs.append(float(np.mean([g["bpp"] for g in got])))
                ys.append(float(np.mean(vals)))
    return xs, ys


def _paper_points(a: Analysis, kind: str) -> Points:
    """The paper's own points, averaged over the images of this run (PSNR only, all images or none)."""
    if kind != "psnr" or not all(im in a.psnr_curves["paper"] for im in a.images):
        return [], []
    table = [a.psnr_curves["paper"][im] for im in a.images]
    n = min(len(t) for t in table)
    return ([float(np.mean([t[k][0] for t in table])) for k in range(n)],
            [float(np.mean([t[k][1] for t in table])) for k in range(n)])


def _time_figure(a: Analysis, grid: np.ndarray, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for s in a.series:
        if s == "paper":
            continue
        if s.startswith("ours:"):
            _plot_ours_time(ax, a, s)
        else:
            _plot_baseline_time(ax, a, s, grid)
    if a.paper_time_s:
        ax.axhline(a.paper_time_s, color="black", linestyle="--", label="paper, RTX 3090 (Table 2)")
    _rate_axis(ax, a.rates)
    ax.set_yscale("log")
    ax.set_ylabel("encode seconds per image")
    ax.set_title("Encode time")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines or ax.collections:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_ours_time(ax, a: Analysis, series: str) -> None:
    """Every encode as a faint dot, and the median bpp and seconds per target as a line."""
    per_image = a.ours_rows[series.split(":", 1)[1]].values()
    scatter = [(g["bpp"], g["encode_s"]) for per in per_image for g in per.values()]
    if scatter:
        ax.scatter(*zip(*scatter), s=10, alpha=0.35)
    med = []
    for rate in a.rates:
        got = [g for per in per_image if (g := per.get(round(rate, 6)))]
        if got:
            med.append((float(np.median([g["bpp"] for g in got])), float(np.median([g["encode_s"] for g in got]))))
    if med:
        ax.plot(*zip(*med), marker="o", linewidth=2, label=f"{a.labels[series]} (median)")


def _plot_baseline_time(ax, a: Analysis, series: str, grid: np.ndarray) -> None:
    xs, ys = _on_grid(grid, lambda r: metrics.median_or_none([a.at("encode_s", series, im, r) for im in a.images]))
    if xs:
        ax.plot(xs, ys, label=f"{a.labels[series]} (median)", **STYLES.get(series, {}))

