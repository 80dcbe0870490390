"""Where the quantisation loss comes from: the fitted set's PSNR with each quantiser alone, then all.

    python -m bench.quantisation_loss --images kodim23,kodim05 --bpp 0.125

Runs the default method's fit phase, then renders the fitted Gaussians with only the positions, only the
shapes or only the colours quantised as the quantised phase starts (K-means codebooks fresh), all three,
and finally after the quantised phase has trained them. Prints one line per image (PSNR in dB).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from bench.paths import KODAK
from codec.image_io import load_image
from codec.options import EncodeOptions
from codec.train.encoder import EncodeRun


def _psnr(run: EncodeRun, inputs: list[torch.Tensor]) -> float:
    return 10 * math.log10(1 / float((run.render(inputs).clamp(0, 1) - run.target).square().mean()))


def breakdown(path: Path, options: EncodeOptions) -> dict[str, float]:
    run = EncodeRun(load_image(path), options)
    run.fit()
    fitted = run.fitted_inputs()
    run.quantise()  # may prune to the measured budget first
    pruned, quantised = run.fitted_inputs(), run.quantised_inputs()
    row = {
        "fitted": _psnr(run, fitted),
        "positions only": _psnr(run, [quantised[0]] + pruned[1:]),
        "shapes only": _psnr(run, pruned[:1] + quantised[1:3] + pruned[3:]),
        "colours only": _psnr(run, pruned[:3] + quantised[3:]),
        "all three": _psnr(run, quantised),
    }
    run.train_quantised()
    row["after the quantised phase"] = _psnr(run, run.quantised_inputs())
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="kodim23,kodim05")
    parser.add_argument("--bpp", type=float, default=0.125)
    parser.add_argument("--data", type=Path, default=KODAK)
    args = parser.parse_args(argv)
    options = EncodeOptions(bpp=args.bpp, device="cpu")
    for name in args.images.split(","):
        started = time.perf_counter()
        row = breakdown(args.data / f"{name}.png", options)
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items())
              + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
