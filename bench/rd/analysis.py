"""Curves per codec and image, interpolated to the target rates: averages, comparisons and Bjøntegaard deltas."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import metrics
from bench.baselines import CODECS
from bench.rd.plan import ImageInfo

# Ours and the paper aim at each rate and land a little off it; their curves are extended linearly by up
# to this fraction of the end rate so that 0.042 is not "n/a" for a file at 0.043. Sweeps get no such slack.
RATE_TOLERANCE = 0.10
METHOD_LABELS = {"default": "ours", "paper": "ours (paper config)"}

Curves = dict[str, dict[str, list[tuple[float, float]]]]  # series -> image -> (bpp, value) points


@dataclass
class Analysis:
    rates: list[float]
    images: list[str]
    series: list[str]  # "ours:<method>", "paper", "jpeg", ...
    labels: dict[str, str]
    psnr_curves: Curves
    ssim_curves: Curves
    time_curves: Curves  # encode seconds
    ours_rows: dict[str, dict[str, dict[float, dict]]]  # method -> image -> target -> row
    paper_time_s: float | None = None

    def tolerance(self, series: str) -> float:
        return RATE_TOLERANCE if series.startswith("ours:") or series == "paper" else 0.0

    def at(self, kind: str, series: str, image: str, rate: float) -> float | None:
        curves = {"psnr": self.psnr_curves, "ms_ssim": self.ssim_curves, "encode_s": self.time_curves}[kind]
        curve = curves.get(series, {}).get(image)
        return None if not curve else metrics.interpolate(curve, rate, self.tolerance(series))

    def average(self, kind: str, series: str, rate: float) -> float | None:
        return metrics.mean_or_none(self.at(kind, series, im, rate) for im in self.images)

    def ours_at(self, series: str, rate: float) -> list[dict | None]:
        """The rows of the ours series ``series`` at the target ``rate``, per image (None where missing)."""
        method = series.split(":", 1)[1]
        return [self.ours_rows[method].get(im, {}).get(round(rate, 6)) for im in self.images]

    def bd(self, anchor: str, test: str) -> dict:
        """BD-rate / BD-PSNR of ``test`` against ``anchor``: mean of per-image values and on average curves."""
        lo, hi = min(self.rates), max(self.rates)

        def clipped(series: str, curve):
            return curve if self.tolerance(series) else metrics.clip_curve(curve, lo, hi)

        per_rate, per_psnr = [], []
        for im in self.images:
            a = self.psnr_curves.get(anchor, {}).get(im)
            t = self.psnr_curves.get(test, {}).get(im)
            if not a or not t:
                continue
            a, t = clipped(anchor, a), clipped(test, t)
            per_rate.append(metrics.bd_rate(a, t))
            per_psnr.append(metrics.bd_psnr(a, t))
        grid = sorted(set(self.rates) | set(np.geomspace(lo, hi, 25).tolist())) if hi > lo else list(self.rates)

        def average_curve(series: str) -> list[tuple[float, float]]:
            rates = self.rates if self.tolerance(series) else grid
            return [(r, v) for r in rates if (v := self.average("psnr", series, r)) is not None]

        avg_a, avg_t = average_curve(anchor), average_curve(test)
        rate_ok = [v for v in per_rate if v is not None]
        psnr_ok = [v for v in per_psnr if v is not None]
        return {
            "bd_rate": float(np.mean(rate_ok)) if rate_ok else None, "bd_rate_n": len(rate_ok),
            "bd_psnr": float(np.mean(psnr_ok)) if psnr_ok else None, "bd_psnr_n": len(psnr_ok),
            "avg_bd_rate": metrics.bd_rate(avg_a, avg_t) if avg_a and avg_t else None,
            "avg_bd_psnr": metrics.bd_psnr(avg_a, avg_t) if avg_a and avg_t else None,
        }


def analyse(rows: dict[tuple, dict], images: list[ImageInfo], rates: list[float], methods: list[str],
            codecs: list[str], iterations: int | None, seed: int, paper: dict | None,
            paper_time_s: float | None = None) -> Analysis:
    """The curves of the rows that belong to this run: its images (at their sizes), codecs and settings."""
    sizes = {im.name: (im.width, im.height) for im in images}
    names = [im.name for im in images]
    wanted = {round(r, 6) for r in rates}
    series, labels = _series(names, methods, codecs, paper)
    psnr_c: dict = {}
    ssim_c: dict = {}
    time_c: dict = {}
    ours_rows: dict = {m: {} for m in methods}
    for s in series:
        psnr_c[s], ssim_c[s], time_c[s] = {}, {}, {}
    for row in rows.values():
        if sizes.get(row["image"]) != (row["width"], row["height"]):
            continue
        if row["codec"] == "ours":
            if (row["method"] not in methods or row.get("iterations") != iterations or row.get("seed", 0) != seed
                    or round(float(row["target_bpp"]), 6) not in wanted or "ours" not in codecs):
                continue
            s = f"ours:{row['method']}"
            ours_rows[row["method"]].setdefault(row["image"], {})[round(float(row["target_bpp"]), 6)] = row
        elif row["codec"] in codecs:
            s = row["codec"]
        else:
            continue
        psnr_c[s].setdefault(row["image"], []).append((row["bpp"], row["psnr"]))
        ssim = row.get("ms_ssim")
        ssim_c[s].setdefault(row["image"], []).append((row["bpp"], math.nan if ssim is None else ssim))
        time_c[s].setdefault(row["image"], []).append((row["bpp"], row["encode_s"]))
    if "paper" in series:
        psnr_c["paper"] = {n: paper[n] for n in names if n in paper}
    return Analysis(list(rates), names, series, labels, psnr_c, ssim_c, time_c, ours_rows, paper_time_s)


def _series(names: list[str], methods: list[str], codecs: list[str],
            paper: dict | None) -> tuple[list[str], dict[str, str]]:
    """The series of a run in report order (ours per method, the paper, the baselines) and their labels."""
    series: list[str] = []
    labels: dict[str, str] = {}
    if "ours" in codecs:
        for m in methods:
            series.append(f"ours:{m}")
            labels[f"ours:{m}"] = METHOD_LABELS[m] if len(methods) > 1 else "ours"
    if paper and any(n in paper for n in names):
        series.append("paper")
        labels["paper"] = "paper"
    for c in codecs:
        if c != "ours":
            series.append(c)
            labels[c] = CODECS[c].label
    return series, labels


def parse_paper_time(path: Path) -> float | None:
    """Encode seconds per image of the paper's codec (Table 2), if the file states it."""
    try:
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and "2dgs" in cells[0].lower():
                return float(cells[1])
    except (OSError, ValueError):
        pass
    return None
