"""Ablations: each row changes one thing of an encoder method and re-encodes the same images.

    python -m bench.ablation --images kodim05,kodim20 --bpp 0.125 --crop 384x256

Rows are the method as shipped and variants of it (``VARIANTS``: a base method plus overrides of its parts'
fields, ``"part.field"`` as ``codec.train.method.Method.replace`` takes them), each reported as average PSNR,
real bpp and median encode seconds over the images, written to the "ablation" section of BENCHMARKS.md; each
image's row goes to ``bench/results/<section>.jsonl``. ``--against`` adds, per stored baseline codec (JPEG's
and the others' rows of a ``bench.rd`` results file: their quality at a given size does not depend on the
machine), its PSNR on each image at that row's real bpp, interpolated, and the average difference.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

from bench.metrics import interpolate
from bench.paths import KODAK, RESULTS_DIR
from bench.rd.store import append_rows, load_results
from bench.report import machine_line, write_section

VARIANTS: dict[str, tuple[str, dict]] = {
    "default (as shipped)": ("default", {}),
    "default, 1800 iterations": ("default", {"schedule.iterations": 1800}),
    "default, 3600 iterations": ("default", {"schedule.iterations": 3600}),
    "default, fixed steps (before steps scaled with the density)": ("default", {"schedule.scale_from_density": 0.0}),
    "default, 10 density rounds": ("default", {"schedule.densify_rounds": 10}),
    "default, no rate term": ("default", {"loss.rate_weight": 0.0}),
    "default, rate term 0.01": ("default", {"loss.rate_weight": 0.01}),
    "default, colours through a K-means codebook (format v1)": ("default", {"format.color_per_gaussian": False,
                                                                            "loss.rate_weight": 0.0}),
    "default, colour codebook of N/8 entries": ("default", {"format.color_per_gaussian": False,
                                                            "loss.rate_weight": 0.0,
                                                            "format.gaussians_per_entry": 8}),
    "default before 7-bit shapes (5 bits, half resolution to 0.5, quantised from 0.7)": (
        "default", {"format.shape_bits": 5, "schedule.coarse_share": 0.5, "schedule.fit_share": 0.7}),
    "default, 5-bit shapes": ("default", {"format.shape_bits": 5}),
    "default, 6-bit shapes": ("default", {"format.shape_bits": 6}),
    "default, 7-bit colours": ("default", {"format.color_bits": 7}),
    "default, 9-bit positions": ("default", {"format.position_bits": 9}),
    "default, all steps at full resolution": ("default", {"schedule.coarse_share": 0.0}),
    "default, shapes through a K-means codebook": ("default", {"format.shape_per_gaussian": False,
                                                               "loss.rate_weight": 0.0}),
    "default, L1 distortion (before RMSE)": ("default", {"loss.distortion": "l1"}),
    "default, histograms only (format v2, before geometric models)": ("default", {"format.parametric_models": False}),
    "default, no background (format v3, before the background)": ("default", {"format.background": False}),
    "default, L1 + 0.2 SSIM loss": ("default", {"loss.distortion": "l1", "loss.ssim_weight": 0.2}),
    "default, ordered alpha blending (positions unsorted, no background)": ("default", {"format.blend_mode": "alpha",
                                                                         "format.background": False}),
    "default, Gaussians only (format v4, before the texture layer)": ("default", {"texture.from_bpp": math.inf}),
    "default, texture with 1600 steps": ("default", {"texture.steps": 1600}),
    "default, texture with half of the bits to the Gaussians": ("default", {"texture.gaussian_share": 1 / 2}),
    "default, texture with two thirds of the bits to the Gaussians": ("default", {"texture.gaussian_share": 2 / 3}),
    "paper configuration": ("paper", {}),
}


def load(path: Path, crop: str | None):
    """The image, or its centred crop of WxH pixels (a quicker stand-in for the full image)."""
    import numpy as np
    from codec import load_image

    pixels = load_image(path)
    if crop:
        width, height = map(int, crop.split("x"))
        top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
        pixels = np.ascontiguousarray(pixels[top:top + height, left:left + width])
    return pixels


def variant_method(name: str):  # -> codec.Method
    import codec

    base, overrides = VARIANTS[name]
    return codec.METHODS[base].replace(name="ablation", **overrides)


def run_variant(name: str, images: list[Path], bpp: float, crop: str | None) -> list[dict]:
    import codec

    options = codec.EncodeOptions(bpp=bpp, method=variant_method(name))
    rows = []
    for path in images:
        started = time.perf_counter()
        report = codec.encode_with_report(load(path, crop), options=options)
        rows.append({"variant": name, "image": path.stem, "target": bpp, "psnr": report.psnr, "bpp": report.bpp,
                     "seconds": time.perf_counter() - started, "crop": crop})
        print(f"{name} / {path.stem}: {report.psnr:.2f} dB, {report.bpp:.4f} bpp, {rows[-1]['seconds']:.0f} s",
              flush=True)
    return rows


def summarise(rows: list[dict], baselines: dict[str, dict[str, list[tuple[float, float]]]]) -> dict:
    """Averages over a variant's images, and per baseline codec its average PSNR at each image's real bpp."""
    summary = {"psnr": statistics.fmean(r["psnr"] for r in rows), "bpp": statistics.fmean(r["bpp"] for r in rows),
               "seconds": statistics.median(r["seconds"] for r in rows)}
    for codec_name, curves in baselines.items():
        at = [interpolate(curves.get(r["image"], []), r["bpp"]) for r in rows]
        summary[codec_name] = None if None in at else statistics.fmean(at)
    return summary


def stored_baselines(path: Path, codecs: list[str]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """(bpp, PSNR) curves per codec and image from a ``bench.rd`` results file."""
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {name: {} for name in codecs}
    for row in load_results(path).values():
        if row.get("codec") in curves and row.get("psnr") is not None:
            curves[row["codec"]].setdefault(row["image"], []).append((row["bpp"], row["psnr"]))
    return curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="kodim05,kodim20")
    parser.add_argument("--crop", default=None, help="encode centred WxH crops instead of whole images")
    parser.add_argument("--bpp", type=float, default=0.125)
    parser.add_argument("--data", type=Path, default=KODAK)
    parser.add_argument("--variants", default=";".join(VARIANTS), help="semicolon-separated variant names")
    parser.add_argument("--section", default="ablation", help="BENCHMARKS.md section to write (default: %(default)s)")
    parser.add_argument("--against", default=None, help="FILE:CODEC,CODEC: stored bench.rd rows to compare with "
                                                        "(whole images only)")
    args = parser.parse_args(argv)
    images = [args.data / f"{name}.png" for name in args.images.split(",")]
    names = [n for n in args.variants.split(";") if n]
    baselines = {}
    if args.against:
        if args.crop:
            parser.error("--against compares whole images: the stored rows are of whole images")
        path, _, codecs = args.against.partition(":")
        baselines = stored_baselines(Path(path), codecs.split(","))
    per_image = {name: run_variant(name, images, args.bpp, args.crop) for name in names}
    append_rows(RESULTS_DIR / f"{args.section}.jsonl", [row for rows in per_image.values() for row in rows])
    results = {name: summarise(rows, baselines) for name, rows in per_image.items()}
    shipped = results.get("default (as shipped)")
    command = f"python -m bench.ablation --images {args.images} --bpp {args.bpp}" + (f" --crop {args.crop}" if args.crop else "")
    if args.variants != parser.get_default("variants"):
        command += f" --variants '{args.variants}'"
    if args.section != parser.get_default("section"):
        command += f" --section {args.section}"
    if args.against:
        command += f" --against {args.against}"
    lines = [f"## Ablation at {args.bpp} bpp (`{command}`)", "",
             f"Machine: {machine_line()}. Images: {args.images}" + (f", centred {args.crop} crops" if args.crop else "")
             + ". One encode per image and row, one at a time.", "",
             "| variant | avg PSNR dB | Δ vs shipped | avg real bpp | median encode s |"
             + "".join(f" {name} at its bpp | Δ vs {name} |" for name in baselines),
             "|---|---:|---:|---:|---:|" + "---:|---:|" * len(baselines)]
    for name, r in results.items():
        delta = f"{r['psnr'] - shipped['psnr']:+.2f}" if shipped else "n/a"
        versus = "".join(" n/a | n/a |" if r[b] is None else f" {r[b]:.2f} | {r['psnr'] - r[b]:+.2f} |"
                         for b in baselines)
        lines.append(f"| {name} | {r['psnr']:.2f} | {delta} | {r['bpp']:.4f} | {r['seconds']:.0f} |{versus}")
    markdown = "\n".join(lines)
    print(markdown)
    write_section(args.section, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
