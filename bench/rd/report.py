"""The markdown section of BENCHMARKS.md: settings, tables per rate, verdicts, BD deltas, plots and all rows."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from bench import metrics
from bench.rd.analysis import RATE_TOLERANCE, Analysis


def _f(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ours(a: Analysis) -> list[str]:
    return [s for s in a.series if s.startswith("ours:")]


def _others(a: Analysis) -> list[str]:
    return [s for s in a.series if not s.startswith("ours:")]


def verdicts(a: Analysis) -> list[str]:
    """One line per rate (and per method of ours): ours against every other codec, in dB."""
    lines = []
    for rate in a.rates:
        for s in _ours(a):
            mine = a.average("psnr", s, rate)
            parts = []
            for o in _others(a):
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


def deltas(a: Analysis, series: str, rate: float) -> dict[str, tuple[float | None, int]]:
    """Per baseline: ours (``series``) minus it in dB at ``rate``, averaged over the images where both reach the
    rate, and how many images that is (a low-rate average over all images is n/a for most baselines)."""
    out = {}
    for o in _others(a):
        diffs = [m - t for im in a.images
                 if (m := a.at("psnr", series, im, rate)) is not None and (t := a.at("psnr", o, im, rate)) is not None]
        out[o] = (float(np.mean(diffs)) if diffs else None, len(diffs))
    return out


def deltas_table(a: Analysis) -> list[str]:
    """Ours per rate (PSNR, real bpp) and ``deltas`` against each baseline, as "Δ dB (images)"."""
    rows = []
    for s in _ours(a):
        for rate in a.rates:
            real = metrics.mean_or_none((g or {}).get("bpp") for g in a.ours_at(s, rate))
            cells = [f"{_f(d, 2, True)} ({n})" for d, n in deltas(a, s, rate).values()]
            rows.append([f"{rate:g}", _f(a.average("psnr", s, rate)), _f(real, 4)] + cells)
    header = ["rate (bpp)", "ours dB", "ours real bpp"] + [f"vs {a.labels[o]}" for o in _others(a)]
    return [_table(header, rows), ""]


def standing(a: Analysis) -> list[str]:
    """One line per baseline: the rates where ours is ahead of it and where behind, by the sign of ``deltas``."""
    lines = []
    for s in _ours(a):
        per_rate = {rate: deltas(a, s, rate) for rate in a.rates}
        for o in _others(a):
            signs = {rate: d[o][0] > 0 for rate, d in per_rate.items() if d[o][0] is not None}
            ahead = [f"{r:g}" for r, up in signs.items() if up]
            behind = [f"{r:g}" for r, up in signs.items() if not up]
            where = "every rate" + (" it reaches" if len(signs) < len(a.rates) else "")
            if not signs:
                text = f"{a.labels[o]} reaches none of these rates"
            elif not ahead or not behind:
                text = f"**{'ahead of' if ahead else 'behind'} {a.labels[o]}** at {where}"
            else:
                text = f"**ahead of {a.labels[o]}** at {', '.join(ahead)} bpp, **behind** at {', '.join(behind)} bpp"
            lines.append(f"- {a.labels[s]}: {text}" if len(_ours(a)) > 1 else f"- {text}")
    return lines


def render_markdown(a: Analysis, *, title: str, command: str, machine: str, settings: list[str],
                    plots: dict[str, str]) -> str:
    ours = _ours(a)
    out = _heading(a, title, command, machine, settings)
    out += _psnr_table(a)
    if ours:
        out += ["### Verdict per rate", ""] + verdicts(a) + [""]
    out += _ssim_table(a)
    if ours and _others(a):
        out += _bd_table(a)
    if ours:
        out += ["### Time and size per rate", "", TIME_NOTE + (f" The paper reports {a.paper_time_s:g} s per Kodak "
                f"image on an RTX 3090 (Table 2)." if a.paper_time_s else ""), ""] + time_table(a)
    if plots:
        out += ["### Plots", ""] + [f"![{name}]({link})" for name, link in plots.items()] + [""]
    if ours and "paper" in a.series:
        out += _per_image_tables(a)
    out += _all_rows(a)
    return "\n".join(out)


def _heading(a: Analysis, title: str, command: str, machine: str, settings: list[str]) -> list[str]:
    out = [f"## {title}", ""]
    out.append(f"Machine: {machine}.  ")
    out.append(f"Generated {datetime.now().strftime('%Y-%m-%d %H:%M')}; {plural(len(a.images), 'image')}; "
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
    return out


def _psnr_table(a: Analysis) -> list[str]:
    header = ["rate (bpp)"]
    for s in _ours(a):
        header += [a.labels[s], f"{a.labels[s]} real bpp"]
    header += [a.labels[o] for o in _others(a)]
    rows = []
    for rate in a.rates:
        r = [f"{rate:g}"]
        for s in _ours(a):
            real = [(g or {}).get("bpp") for g in a.ours_at(s, rate)]
            r += [_f(a.average("psnr", s, rate)), _f(metrics.mean_or_none(real), 4)]
        r += [_f(a.average("psnr", o, rate)) for o in _others(a)]
        rows.append(r)
    return ["### Average PSNR (dB) per rate", "", _table(header, rows), ""]


def _ssim_table(a: Analysis) -> list[str]:
    ssim_series = [s for s in a.series if s != "paper"]
    if not ssim_series:
        return []
    rows = [[f"{rate:g}"] + [_f(a.average("ms_ssim", s, rate), 4) for s in ssim_series] for rate in a.rates]
    return ["### Average MS-SSIM per rate", "", _table(["rate (bpp)"] + [a.labels[s] for s in ssim_series], rows), ""]


def _bd_table(a: Analysis) -> list[str]:
    out = ["### Bjøntegaard deltas", "",
           "Ours (test) against each anchor: BD-rate in % (negative: ours needs fewer bits), BD-PSNR in dB "
           "(positive: ours is better); cubic fit in log-rate over the overlapping range. *Per image* is the "
           "mean over the images where the curves overlap (count given); *average curves* compares the "
           "averaged curves (sweeps evaluated on a log-spaced grid of rates).", ""]
    rows = []
    for s in _ours(a):
        for o in _others(a):
            d = a.bd(o, s)
            rows.append([a.labels[s], a.labels[o], _f(d["bd_rate"], 1, True) + f" ({d['bd_rate_n']})",
                         _f(d["bd_psnr"], 2, True) + f" ({d['bd_psnr_n']})",
                         _f(d["avg_bd_rate"], 1, True), _f(d["avg_bd_psnr"], 2, True)])
    return out + [_table(["test", "anchor", "BD-rate % (per image)", "BD-PSNR dB (per image)",
                          "BD-rate % (average curves)", "BD-PSNR dB (average curves)"], rows), ""]


TIME_NOTE = ("Encode seconds are the wall time of `codec.encode_with_report` (which includes its own check decode); "
             "decode seconds are a second decode of the real bytes. Baselines: encode seconds interpolated to the "
             "rate, median over images.")


def time_table(a: Analysis) -> list[str]:
    """Ours' encode and decode seconds and Gaussian count per rate, the baselines' encode seconds, the devices."""
    base = [o for o in _others(a) if o != "paper"]
    header = ["rate (bpp)"]
    for s in _ours(a):
        lab = a.labels[s]
        header += [f"{lab} median encode s", f"{lab} mean encode s", f"{lab} median decode s",
                   f"{lab} median Gaussians"]
    header += [f"{a.labels[o]} median encode s" for o in base]
    rows = []
    for rate in a.rates:
        r = [f"{rate:g}"]
        for s in _ours(a):
            got = [g for g in a.ours_at(s, rate) if g]
            enc = [g["encode_s"] for g in got]
            r += [_f(metrics.median_or_none(enc), 1), _f(float(np.mean(enc)) if enc else None, 1),
                  _f(metrics.median_or_none([g["decode_s"] for g in got]), 3),
                  _f(metrics.median_or_none([g["n_gaussians"] for g in got]), 0)]
        r += [_f(metrics.median_or_none([a.at("encode_s", o, im, rate) for im in a.images]), 3) for o in base]
        rows.append(r)
    return [_table(header, rows), "", _devices_line(a), ""]


def _devices_line(a: Analysis) -> str:
    ours_rows = [row for m in a.ours_rows.values() for per in m.values() for row in per.values()]
    devices = sorted({row.get("device", "?") for row in ours_rows})
    threads = sorted({row.get("threads") for row in ours_rows} - {None})
    return (f"Devices: {', '.join(devices) or 'n/a'}; torch threads per encode: "
            f"{', '.join(map(str, threads)) or 'n/a'}.")


def _per_image_tables(a: Analysis) -> list[str]:
    out = []
    for s in _ours(a):
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
    return out


def _all_rows(a: Analysis) -> list[str]:
    out = []
    for s in _ours(a):
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
    return out
