"""Rate–distortion benchmark on Kodak: our codec against the paper's Table 1, JPEG, WebP and AVIF.

    python -m bench.rd                         # all of ../shared/data/kodak at the default rates
    python -m bench.rd --images kodim01,kodim05 --rates 0.125 --iterations 200
    python -m bench.rd --method default,paper --jobs 2

Every image is encoded at every target rate; the real files are decoded and measured (real bpp from the
file size, RGB PSNR, MS-SSIM, encode and decode seconds, Gaussian count, device). Finished rows are
appended to a JSON-lines results file and skipped on a rerun, so an interrupted run resumes. The Pillow
baselines are quality sweeps on the same images, interpolated to the same rates. The report is the
section ``--section`` of BENCHMARKS.md (see bench/report.py), with two plots under ``--plots-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench import metrics
from bench.baselines import CODECS, load_rgb, parse_paper_table, sweep, sweep_complete

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kodak"
DEFAULT_PAPER = REPO.parent / "shared" / "paper" / "table1.md"
RESULTS_DIR = REPO / "bench" / "results"
BENCHMARKS = REPO / "BENCHMARKS.md"
DEFAULT_RATES = (0.042, 0.066, 0.125, 0.183, 0.25, 0.5)  # the paper's four, then two higher
DEFAULT_SECTION = "rd-kodak"
METHODS = ("default", "paper")
ALL_CODECS = ("ours", *CODECS)
# Ours and the paper aim at each rate and land a little off it; their curves are extended linearly by up
# to this fraction of the end rate so that 0.042 is not "n/a" for a file at 0.043. Sweeps get no such slack.
RATE_TOLERANCE = 0.10
METHOD_LABELS = {"default": "ours", "paper": "ours (paper config)"}


# --- tasks (run in worker processes) ----------------------------------------------------------------------

@dataclass(frozen=True)
class OursTask:
    image: str
    path: str
    method: str
    rate: float
    iterations: int | None
    seed: int
    device: str | None
    save_dir: str | None

    def describe(self) -> str:
        return f"{self.image} {self.method} @{self.rate:g}"


@dataclass(frozen=True)
class SweepTask:
    image: str
    path: str
    codec: str
    max_rate: float
    done: dict = field(default_factory=dict)  # quality -> row already in the results

    def describe(self) -> str:
        return f"{self.image} {self.codec}"


_THREADS: int | None = None


def _init_worker(threads: int) -> None:
    """Limit a process's threads to its share of the cores (cores // jobs)."""
    global _THREADS
    _THREADS = threads
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(threads)


def run_task(task: OursTask | SweepTask) -> list[dict]:
    """Rows for ``task``; on failure one row with an "error" (not stored, so a rerun retries it)."""
    try:
        if isinstance(task, OursTask):
            return [_run_ours(task)]
        return _run_sweep(task)
    except Exception as exc:  # noqa: BLE001 - one failed encode must not end a run of hours
        return [{"error": f"{type(exc).__name__}: {exc}", "task": task.describe(),
                 "traceback": traceback.format_exc(limit=8)}]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_WARM: set = set()


def _warm_up(device: str | None) -> None:
    """One tiny encode per process and device, so that lazy imports and JIT compilation (numba, Triton) are
    not charged to the first image's encode time."""
    if device in _WARM:
        return
    _WARM.add(device)
    import codec

    rng = np.random.default_rng(0)
    try:
        codec.decode(codec.encode(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 1.0, iterations=2,
                                  device=device), device=device)
    except Exception:  # noqa: BLE001 - only a warm-up; the real encode reports any real problem
        pass


def _run_ours(task: OursTask) -> dict:
    import codec

    _warm_up(task.device)
    image = load_rgb(task.path)
    height, width = image.shape[:2]
    started = time.perf_counter()
    report = codec.encode_with_report(image, task.rate, method=task.method, iterations=task.iterations,
                                      seed=task.seed, device=task.device)
    encode_s = time.perf_counter() - started
    data = report.data
    if task.save_dir:
        out = Path(task.save_dir) / f"{task.image}-{task.method}-{task.rate:g}.gsi"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        data = out.read_bytes()
    decoded = codec.decode(data, device=task.device)  # also warms the decoder up
    started = time.perf_counter()
    again = codec.decode(data, device=task.device)
    decode_s = time.perf_counter() - started
    return {
        "codec": "ours", "image": task.image, "width": width, "height": height, "method": task.method,
        "iterations": task.iterations, "seed": task.seed, "target_bpp": task.rate, "bytes": len(data),
        "bpp": metrics.bpp(len(data), width, height), "psnr": metrics.psnr(image, decoded),
        "ms_ssim": metrics.ms_ssim(image, decoded), "encode_s": encode_s, "decode_s": decode_s,
        "n_gaussians": report.n_gaussians, "device": report.device, "report_psnr": report.psnr,
        "deterministic": bool(np.array_equal(decoded, again)), "threads": _threads(), "time": _now(),
    }


def _run_sweep(task: SweepTask) -> list[dict]:
    image = load_rgb(task.path)
    rows = []
    for point in sweep(CODECS[task.codec], image, task.max_rate, task.done, threads=_threads()):
        rows.append({"image": task.image, **point, "device": "cpu", "threads": _threads(), "time": _now()})
    return rows


def _threads() -> int:
    if _THREADS is not None:
        return _THREADS
    import torch

    return torch.get_num_threads()


# --- results file -----------------------------------------------------------------------------------------

def row_key(row: dict) -> tuple:
    size = (row["width"], row["height"])
    if row["codec"] == "ours":
        return ("ours", row["image"], size, row["method"], row.get("iterations"), row.get("seed", 0),
                round(float(row["target_bpp"]), 6))
    return (row["codec"], row["image"], size, row["quality"])


def load_results(path: Path) -> dict[tuple, dict]:
    """Rows of a JSON-lines results file by key (the last of duplicates wins; a torn last line is skipped)."""
    rows: dict[tuple, dict] = {}
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            rows[row_key(row)] = row
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def _clean(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def append_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(_clean(row)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# --- planning and running ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageInfo:
    name: str
    path: Path
    width: int
    height: int


def find_images(folder: Path, names: list[str] | None) -> list[ImageInfo]:
    from PIL import Image

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".ppm", ".bmp", ".tif", ".tiff"))
    if names:
        by_name = {p.stem: p for p in paths}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise SystemExit(f"no image {', '.join(missing)} in {folder}")
        paths = [by_name[n] for n in names]
    if not paths:
        raise SystemExit(f"no images in {folder}")
    images = []
    for p in paths:
        with Image.open(p) as im:
            width, height = im.size  # EXIF orientation is not used by Kodak or the fixtures
        images.append(ImageInfo(p.stem, p, width, height))
    return images


def plan(args: argparse.Namespace, images: list[ImageInfo], done: dict[tuple, dict]) -> list[OursTask | SweepTask]:
    tasks: list[OursTask | SweepTask] = []
    max_rate = max(args.rates)
    for codec in args.codecs:
        if codec == "ours":
            continue
        for im in images:
            have = {row["quality"]: row for key, row in done.items()
                    if key[0] == codec and key[1] == im.name and key[2] == (im.width, im.height)}
            if not sweep_complete(CODECS[codec], have, max_rate):
                tasks.append(SweepTask(im.name, str(im.path), codec, max_rate, have))
    if "ours" in args.codecs:
        for im in images:
            for method in args.methods:
                for rate in args.rates:
                    task = OursTask(im.name, str(im.path), method, rate, args.iterations, args.seed, args.device,
                                    str(args.save_bitstreams) if args.save_bitstreams else None)
                    key = ("ours", im.name, (im.width, im.height), method, args.iterations, args.seed,
                           round(rate, 6))
                    if key not in done:
                        tasks.append(task)
    return tasks


def execute(tasks: list, results: Path, jobs: int, write: bool = True) -> tuple[list[dict], list[dict]]:
    """Run ``tasks`` on ``jobs`` processes (in this one for 1), appending rows to ``results`` as they finish."""
    global _THREADS
    from tqdm import tqdm

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // jobs)
    new_rows: list[dict] = []
    errors: list[dict] = []
    bar = tqdm(total=len(tasks), desc="rd", unit="task", dynamic_ncols=True)

    def finished(task, rows: list[dict]) -> None:
        good = [r for r in rows if "error" not in r]
        errors.extend(r for r in rows if "error" in r)
        for r in rows:
            if "error" in r:
                tqdm.write(f"FAILED {r['task']}: {r['error']}", file=sys.stderr)
        if write and good:
            append_rows(results, good)
        new_rows.extend(good)
        last = good[-1] if good else None
        if last is not None:
            bar.set_postfix_str(f"{task.describe()}: {last['bpp']:.3f} bpp {last['psnr']:.2f} dB", refresh=False)
        bar.update(1)

    try:
        if jobs <= 1 or len(tasks) <= 1:
            import torch

            saved = torch.get_num_threads()
            _THREADS = threads
            torch.set_num_threads(threads)
            try:
                for task in tasks:
                    finished(task, run_task(task))
            finally:
                torch.set_num_threads(saved)
                _THREADS = None
        else:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                     initargs=(threads,)) as pool:
                futures = {pool.submit(run_task, task): task for task in tasks}
                for future in as_completed(futures):
                    finished(futures[future], future.result())
    finally:
        bar.close()
    return new_rows, errors


# --- analysis ---------------------------------------------------------------------------------------------

@dataclass
class Analysis:
    rates: list[float]
    images: list[str]
    series: list[str]  # "ours:<method>", "paper", "jpeg", ...
    labels: dict[str, str]
    psnr_curves: dict[str, dict[str, list[tuple[float, float]]]]  # series -> image -> points
    ssim_curves: dict[str, dict[str, list[tuple[float, float]]]]
    time_curves: dict[str, dict[str, list[tuple[float, float]]]]  # encode seconds
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
    sizes = {im.name: (im.width, im.height) for im in images}
    names = [im.name for im in images]
    wanted = {round(r, 6) for r in rates}
    series: list[str] = []
    labels: dict[str, str] = {}
    psnr_c: dict = {}
    ssim_c: dict = {}
    time_c: dict = {}
    ours_rows: dict = {m: {} for m in methods}
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


# --- report -----------------------------------------------------------------------------------------------

def _f(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def verdicts(a: Analysis) -> list[str]:
    """One line per rate (and per method of ours): ours against every other codec, in dB."""
    lines = []
    ours = [s for s in a.series if s.startswith("ours:")]
    others = [s for s in a.series if not s.startswith("ours:")]
    for rate in a.rates:
        for s in ours:
            mine = a.average("psnr", s, rate)
            parts = []
            for o in others:
                theirs = a.average("psnr", o, rate)
                if theirs is None:
                    parts.append(f"{a.labels[o]} n/a")
                    continue
                delta = f" ({_f(mine - theirs, 2, True)})" if mine is not None else ""
                parts.append(f"{a.labels[o]} {_f(theirs)}{delta}")
            head = f"**{rate:g} bpp**: {a.labels[s]} {_f(mine)} dB"
            if parts:
                head += " vs " + parts[0] + (", " + ", ".join(parts[1:]) if parts[1:] else "")
            lines.append("- " + head)
    return lines


def render_markdown(a: Analysis, *, title: str, command: str, machine: str, settings: list[str],
                    plots: dict[str, str]) -> str:
    ours = [s for s in a.series if s.startswith("ours:")]
    others = [s for s in a.series if not s.startswith("ours:")]
    out = [f"## {title}", ""]
    out.append(f"Machine: {machine}.  ")
    out.append(f"Generated {datetime.now().strftime('%Y-%m-%d %H:%M')}; {_plural(len(a.images), 'image')}; "
               f"rates {', '.join(f'{r:g}' for r in a.rates)} bpp.  ")
    out.append(f"Reproduce: `{command}`")
    out.append("")
    out += [f"- {s}" for s in settings]
    out.append("")
    out.append("Real bpp is the file size x 8 / pixels; PSNR is RGB (one MSE over all pixels and channels); "
               "MS-SSIM is pytorch-msssim on 0–255 floats. Each codec's per-image curve is interpolated "
               "linearly in bpp to each rate, then averaged over the images; **n/a**: the codec does not reach "
               f"that rate on at least one image (ours and the paper, which aim at the rates, are extended "
               f"by at most {RATE_TOLERANCE:.0%} beyond their end points).")
    out.append("")

    out += ["### Average PSNR (dB) per rate", ""]
    header = ["rate (bpp)"]
    for s in ours:
        header += [a.labels[s], f"{a.labels[s]} real bpp"]
    header += [a.labels[o] for o in others]
    rows = []
    for rate in a.rates:
        r = [f"{rate:g}"]
        for s in ours:
            m = s.split(":", 1)[1]
            real = [a.ours_rows[m].get(im, {}).get(round(rate, 6), {}).get("bpp") for im in a.images]
            r += [_f(a.average("psnr", s, rate)), _f(metrics.mean_or_none(real), 4)]
        r += [_f(a.average("psnr", o, rate)) for o in others]
        rows.append(r)
    out += [_table(header, rows), ""]

    if ours:
        out += ["### Verdict per rate", ""] + verdicts(a) + [""]

    ssim_series = [s for s in a.series if s != "paper"]
    if ssim_series:
        out += ["### Average MS-SSIM per rate", ""]
        rows = [[f"{rate:g}"] + [_f(a.average("ms_ssim", s, rate), 4) for s in ssim_series] for rate in a.rates]
        out += [_table(["rate (bpp)"] + [a.labels[s] for s in ssim_series], rows), ""]

    if ours and others:
        out += ["### Bjøntegaard deltas", "",
                "Ours (test) against each anchor: BD-rate in % (negative: ours needs fewer bits), BD-PSNR in dB "
                "(positive: ours is better); cubic fit in log-rate over the overlapping range. *Per image* is the "
                "mean over the images where the curves overlap (count given); *average curves* compares the "
                "averaged curves (sweeps evaluated on a log-spaced grid of rates).", ""]
        rows = []
        for s in ours:
            for o in others:
                d = a.bd(o, s)
                rows.append([a.labels[s], a.labels[o], _f(d["bd_rate"], 1, True) + f" ({d['bd_rate_n']})",
                             _f(d["bd_psnr"], 2, True) + f" ({d['bd_psnr_n']})",
                             _f(d["avg_bd_rate"], 1, True), _f(d["avg_bd_psnr"], 2, True)])
        out += [_table(["test", "anchor", "BD-rate % (per image)", "BD-PSNR dB (per image)",
                        "BD-rate % (average curves)", "BD-PSNR dB (average curves)"], rows), ""]

    if ours:
        out += ["### Time and size per rate", "",
                "Encode seconds are the wall time of `codec.encode_with_report` (which includes its own check "
                "decode); decode seconds are a second decode of the real bytes. Baselines: encode seconds "
                "interpolated to the rate, median over images."
                + (f" The paper reports {a.paper_time_s:g} s per Kodak image on an RTX 3090 (Table 2)."
                   if a.paper_time_s else ""), ""]
        header = ["rate (bpp)"]
        for s in ours:
            lab = a.labels[s]
            header += [f"{lab} median encode s", f"{lab} mean encode s", f"{lab} median decode s",
                       f"{lab} median Gaussians"]
        base = [o for o in others if o != "paper"]
        header += [f"{a.labels[o]} median encode s" for o in base]
        rows = []
        for rate in a.rates:
            r = [f"{rate:g}"]
            for s in ours:
                m = s.split(":", 1)[1]
                got = [a.ours_rows[m].get(im, {}).get(round(rate, 6)) for im in a.images]
                got = [g for g in got if g]
                enc = [g["encode_s"] for g in got]
                r += [_f(metrics.median_or_none(enc), 1), _f(float(np.mean(enc)) if enc else None, 1),
                      _f(metrics.median_or_none([g["decode_s"] for g in got]), 3),
                      _f(metrics.median_or_none([g["n_gaussians"] for g in got]), 0)]
            r += [_f(metrics.median_or_none([a.at("encode_s", o, im, rate) for im in a.images]), 3) for o in base]
            rows.append(r)
        out += [_table(header, rows), ""]
        devices = sorted({row.get("device", "?") for m in a.ours_rows.values() for per in m.values()
                          for row in per.values()})
        threads = sorted({row.get("threads") for m in a.ours_rows.values() for per in m.values()
                          for row in per.values()} - {None})
        out.append(f"Devices: {', '.join(devices) or 'n/a'}; torch threads per encode: "
                   f"{', '.join(map(str, threads)) or 'n/a'}.")
        out.append("")

    if plots:
        out += ["### Plots", ""] + [f"![{name}]({link})" for name, link in plots.items()] + [""]

    if ours and "paper" in a.series:
        for s in ours:
            out += [f"### Per image: {a.labels[s]} vs paper (PSNR dB, ours / paper (difference))", ""]
            rows = []
            for im in a.images:
                r = [im]
                for rate in a.rates:
                    mine, theirs = a.at("psnr", s, im, rate), a.at("psnr", "paper", im, rate)
                    cell = f"{_f(mine)} / {_f(theirs)}"
                    if mine is not None and theirs is not None:
                        cell += f" ({_f(mine - theirs, 2, True)})"
                    r.append(cell)
                rows.append(r)
            out += [_table(["image"] + [f"{r:g}" for r in a.rates], rows), ""]

    for s in ours:
        m = s.split(":", 1)[1]
        rows = []
        for im in a.images:
            for key in sorted(a.ours_rows[m].get(im, {})):
                g = a.ours_rows[m][im][key]
                rows.append([im, f"{g['target_bpp']:g}", _f(g["bpp"], 4), _f(g["psnr"]), _f(g.get("ms_ssim"), 4),
                             _f(g["encode_s"], 1), _f(g["decode_s"], 3), str(g["n_gaussians"]), g.get("device", "?")])
        if rows:
            out += [f"<details><summary>All rows of {a.labels[s]}</summary>", "",
                    _table(["image", "target bpp", "real bpp", "PSNR", "MS-SSIM", "encode s", "decode s",
                            "Gaussians", "device"], rows), "", "</details>", ""]
    return "\n".join(out)


def _rate_axis(ax, rates: list[float]) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(rates)
    ax.set_xticklabels([f"{r:g}" for r in rates])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bits per pixel")


def plot(a: Analysis, rd_path: Path, time_path: Path) -> dict[str, Path]:
    """The RD plot (PSNR and MS-SSIM vs bpp) and the encode-time plot; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = min(a.rates), max(a.rates)
    grid = np.geomspace(lo, hi, 40) if hi > lo else np.array([lo])
    written: dict[str, Path] = {}
    styles = {"paper": dict(marker="s", color="black", linestyle="--"), "jpeg": dict(color="tab:red"),
              "webp": dict(color="tab:green"), "avif": dict(color="tab:purple")}

    def points(series: str, kind: str) -> tuple[list[float], list[float]]:
        if series.startswith("ours:"):  # the real points: mean real bpp and mean metric per target
            m = series.split(":", 1)[1]
            xs, ys = [], []
            for rate in a.rates:
                got = [a.ours_rows[m].get(im, {}).get(round(rate, 6)) for im in a.images]
                if all(got):
                    vals = [g.get(kind) for g in got]
                    if all(v is not None and math.isfinite(v) for v in vals):
                        xs.append(float(np.mean([g["bpp"] for g in got])))
                        ys.append(float(np.mean(vals)))
            return xs, ys
        if series == "paper":  # the paper's own points, averaged over the images of this run
            if kind != "psnr" or not all(im in a.psnr_curves["paper"] for im in a.images):
                return [], []
            table = [a.psnr_curves["paper"][im] for im in a.images]
            n = min(len(t) for t in table)
            return ([float(np.mean([t[k][0] for t in table])) for k in range(n)],
                    [float(np.mean([t[k][1] for t in table])) for k in range(n)])
        xs, ys = [], []
        for r in grid:
            v = a.average(kind, series, float(r))
            if v is not None:
                xs.append(float(r))
                ys.append(v)
        return xs, ys

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, kind, ylabel in ((axes[0], "psnr", "PSNR (dB, RGB)"), (axes[1], "ms_ssim", "MS-SSIM")):
        for s in a.series:
            xs, ys = points(s, kind)
            if not xs:
                continue
            style = styles.get(s, dict(marker="o", linewidth=2))
            if not s.startswith("ours:") and s != "paper":
                style = dict(style, marker=None)
            ax.plot(xs, ys, label=a.labels[s], **style)
        _rate_axis(ax, a.rates)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend()
    axes[0].set_title(f"Rate–distortion, average over {_plural(len(a.images), 'image')}")
    fig.tight_layout()
    rd_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(rd_path, dpi=110)
    plt.close(fig)
    written["RD: PSNR and MS-SSIM vs bpp"] = rd_path

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for s in a.series:
        if s == "paper":
            continue
        if s.startswith("ours:"):
            m = s.split(":", 1)[1]
            scatter = [(g["bpp"], g["encode_s"]) for per in a.ours_rows[m].values() for g in per.values()]
            if scatter:
                ax.scatter(*zip(*scatter), s=10, alpha=0.35)
            med = []
            for rate in a.rates:
                got = [g for per in a.ours_rows[m].values() if (g := per.get(round(rate, 6)))]
                if got:
                    med.append((float(np.median([g["bpp"] for g in got])),
                                float(np.median([g["encode_s"] for g in got]))))
            if med:
                ax.plot(*zip(*med), marker="o", linewidth=2, label=f"{a.labels[s]} (median)")
        else:
            xs, ys = [], []
            for r in grid:
                v = metrics.median_or_none([a.at("encode_s", s, im, float(r)) for im in a.images])
                if v is not None:
                    xs.append(float(r))
                    ys.append(v)
            if xs:
                ax.plot(xs, ys, label=f"{a.labels[s]} (median)", **styles.get(s, {}))
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
    fig.savefig(time_path, dpi=110)
    plt.close(fig)
    written["Encode time vs bpp"] = time_path
    return written


# --- command line -----------------------------------------------------------------------------------------

def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _rates(text: str) -> list[float]:
    try:
        rates = sorted({float(t) for t in _list(text)})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad rate list {text!r}") from exc
    if not rates or rates[0] <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.rd", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of images (default: %(default)s)")
    p.add_argument("--images", type=_list, default=None, help="comma-separated image names, e.g. kodim01,kodim05")
    p.add_argument("--rates", type=_rates, default=list(DEFAULT_RATES),
                   help="comma-separated target bpp (default: %(default)s)")
    p.add_argument("--method", dest="methods", type=_list, default=["default"],
                   help=f"codec method(s), comma-separated, of {', '.join(METHODS)} (default: default)")
    p.add_argument("--iterations", type=int, default=None, help="override the codec's iteration count (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="codec device (default: the codec's choice)")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes; each gets cores // jobs torch threads")
    p.add_argument("--codecs", type=_list, default=list(ALL_CODECS),
                   help=f"which of {', '.join(ALL_CODECS)} to run (default: all)")
    p.add_argument("--paper", type=Path, default=DEFAULT_PAPER, help="the paper's Table 1 (markdown)")
    p.add_argument("--section", default=DEFAULT_SECTION, help="BENCHMARKS.md section (default: %(default)s)")
    p.add_argument("--results", type=Path, default=None,
                   help="JSON-lines results file (default: bench/results/<section>.jsonl)")
    p.add_argument("--benchmarks", type=Path, default=BENCHMARKS,
                   help="the markdown file written (default: %(default)s)")
    p.add_argument("--plots-dir", type=Path, default=None,
                   help="where the plots go (default: the results file's folder)")
    p.add_argument("--save-bitstreams", type=Path, default=None, help="also keep our .gsi files in this folder")
    p.add_argument("--no-write", action="store_true",
                   help="print the report instead of writing BENCHMARKS.md and the plots")
    p.add_argument("--report-only", action="store_true", help="encode nothing; report from the results file")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["rd"]:  # `gsic bench rd ...` may pass its sub-command along
        argv = argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        parser.error(f"--method must be from {', '.join(METHODS)}, got {', '.join(bad) or 'nothing'}")
    bad = [c for c in args.codecs if c not in ALL_CODECS]
    if bad or not args.codecs:
        parser.error(f"--codecs must be from {', '.join(ALL_CODECS)}, got {', '.join(bad) or 'nothing'}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    results = args.results or (RESULTS_DIR / f"{args.section}.jsonl")
    plots_dir = args.plots_dir or results.parent

    images = find_images(args.data, args.images)
    done = load_results(results)
    tasks = [] if args.report_only else plan(args, images, done)
    print(f"{len(images)} images, {len(args.rates)} rates; {len(tasks)} tasks to run "
          f"({sum(isinstance(t, OursTask) for t in tasks)} encodes of ours); results: {results}", file=sys.stderr)
    started = time.perf_counter()
    new_rows, errors = execute(tasks, results, args.jobs) if tasks else ([], [])
    print(f"ran {len(tasks)} tasks in {time.perf_counter() - started:.1f} s, {len(new_rows)} new rows, "
          f"{len(errors)} failures", file=sys.stderr)
    rows = load_results(results)
    for row in new_rows:  # the file is the record; this covers a results file that could not be read back
        rows.setdefault(row_key(row), row)

    paper = parse_paper_table(args.paper) if args.paper and args.paper.exists() else None
    analysis = analyse(rows, images, args.rates, args.methods, args.codecs, args.iterations, args.seed, paper,
                       parse_paper_time(args.paper) if paper else None)

    from bench.report import machine_line

    settings = [f"ours: `codec.encode_with_report(image, bpp, method={m!r}, iterations={args.iterations}, "
                f"seed={args.seed}, device={args.device!r})`" for m in args.methods if "ours" in args.codecs]
    settings += [f"{CODECS[c].label}: {CODECS[c].description}; quality sweep up to the first point above "
                 f"{max(args.rates):g} bpp" for c in args.codecs if c != "ours"]
    if "paper" in analysis.series:
        settings.append(f"paper: Table 1 of Zhang et al., \"2D Gaussian Splatting for Image Compression\" "
                        f"(`{os.path.relpath(args.paper, REPO)}`), four points per image")
    try:
        data_name = os.path.relpath(args.data, REPO)
    except ValueError:
        data_name = str(args.data)
    title = f"Rate–distortion on `{data_name}` ({args.section})"
    shown = [a for a in argv if a not in ("--report-only", "--no-write")]  # the run that made the rows
    command = "python -m bench.rd" + (" " + shlex.join(shown) if shown else "")

    benchmarks = args.benchmarks
    links: dict[str, str] = {}
    if not args.no_write:
        written = plot(analysis, plots_dir / f"{args.section}-rd.png", plots_dir / f"{args.section}-time.png")
        links = {name: Path(os.path.relpath(path, benchmarks.resolve().parent)).as_posix()
                 for name, path in written.items()}
    markdown = render_markdown(analysis, title=title, command=command, machine=machine_line(),
                               settings=settings, plots=links)
    if args.no_write:
        print(markdown)
    else:
        from bench.report import write_section

        write_section(args.section, markdown, benchmarks)
        print(f"wrote section {args.section!r} of {benchmarks}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    from bench.rd import main as _main  # the module proper, so worker processes can import what they run

    sys.exit(_main())
