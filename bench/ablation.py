"""Ablations: each row changes one thing of an encoder method and re-encodes the same images.

    python -m bench.ablation --images kodim05,kodim20 --bpp 0.125 --crop 384x256

Rows are the method as shipped and variants of it (``VARIANTS``: a base method plus overrides of its parts'
fields, ``"part.field"`` as ``codec.train.method.Method.replace`` takes them), each reported as average PSNR,
real bpp and median encode seconds over the images, written to the "ablation" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

from bench.paths import KODAK
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
    "default, texture with a third of the bits to the Gaussians": ("default", {"texture.gaussian_share": 1 / 3}),
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


def run_variant(name: str, images: list[Path], bpp: float, crop: str | None) -> dict:
    import codec

    options = codec.EncodeOptions(bpp=bpp, method=variant_method(name))
    rows = []
    for path in images:
        started = time.perf_counter()
        report = codec.encode_with_report(load(path, crop), options=options)
        rows.append((report.psnr, report.bpp, time.perf_counter() - started))
        print(f"{name} / {path.stem}: {report.psnr:.2f} dB, {report.bpp:.4f} bpp, {rows[-1][2]:.0f} s", flush=True)
    return {"psnr": statistics.fmean(r[0] for r in rows), "bpp": statistics.fmean(r[1] for r in rows),
            "seconds": statistics.median(r[2] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="kodim05,kodim20")
    parser.add_argument("--crop", default=None, help="encode centred WxH crops instead of whole images")
    parser.add_argument("--bpp", type=float, default=0.125)
    parser.add_argument("--data", type=Path, default=KODAK)
    parser.add_argument("--variants", default=";".join(VARIANTS), help="semicolon-separated variant names")
    parser.add_argument("--section", default="ablation", help="BENCHMARKS.md section to write (default: %(default)s)")
    args = parser.parse_args(argv)
    images = [args.data / f"{name}.png" for name in args.images.split(",")]
    names = [n for n in args.variants.split(";") if n]
    results = {name: run_variant(name, images, args.bpp, args.crop) for name in names}
    shipped = results.get("default (as shipped)")
    command = f"python -m bench.ablation --images {args.images} --bpp {args.bpp}" + (f" --crop {args.crop}" if args.crop else "")
    if args.variants != parser.get_default("variants"):
        command += f" --variants '{args.variants}'"
    if args.section != parser.get_default("section"):
        command += f" --section {args.section}"
    lines = [f"## Ablation at {args.bpp} bpp (`{command}`)", "",
             f"Machine: {machine_line()}. Images: {args.images}" + (f", centred {args.crop} crops" if args.crop else "")
             + ". One encode per image and row, one at a time.", "",
             "| variant | avg PSNR dB | Δ vs shipped | avg real bpp | median encode s |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        delta = f"{r['psnr'] - shipped['psnr']:+.2f}" if shipped else "n/a"
        lines.append(f"| {name} | {r['psnr']:.2f} | {delta} | {r['bpp']:.4f} | {r['seconds']:.0f} |")
    markdown = "\n".join(lines)
    print(markdown)
    write_section(args.section, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
