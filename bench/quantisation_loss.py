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

from bench.rd.cli import DEFAULT_DATA
from codec.train import encoder
from codec.image_io import load_image
from codec.options import EncodeOptions
from codec.train.rate import RateControl
from codec.train.rate_model import weight_at
from kernels import render


def _psnr(inputs, training) -> float:
    with torch.no_grad():
        image = training.over_background(render(*inputs, training.height, training.width, training.config.blend_mode))
    return 10 * math.log10(1 / float((image.clamp(0, 1) - training.target).square().mean()))


def breakdown(path: Path, options: EncodeOptions) -> dict[str, float]:
    config = options.config
    pixels = load_image(path)
    height, width = pixels.shape[:2]
    target = torch.tensor(pixels, dtype=torch.float32) / 255
    rate = RateControl.for_image(options.target_bpp, height, width, config)
    training = encoder._Training(target, rate.plan, config, options.total_iterations, options.seed, None,
                                 weight_at(config.rate_weight, options.target_bpp),
                                 encoder._mean_color(pixels) if config.background else None)
    fit_steps = max(1, int(config.fit_share * training.total))
    encoder._fit(training, rate, fit_steps)
    fitted = [t.detach() for t in training.fitted_inputs()]
    model = encoder._quantise(training, rate)  # may prune to the measured budget first
    pruned = [t.detach() for t in training.fitted_inputs()]
    quantised = [t.detach() for t in model.render_inputs(training.gaussians)]
    row = {
        "fitted": _psnr(fitted, training),
        "positions only": _psnr([quantised[0]] + pruned[1:], training),
        "shapes only": _psnr(pruned[:1] + quantised[1:3] + pruned[3:], training),
        "colours only": _psnr(pruned[:3] + quantised[3:], training),
        "all three": _psnr(quantised, training),
    }
    encoder._train_quantised(training, model, rate, fit_steps)
    row["after the quantised phase"] = _psnr([t.detach() for t in model.render_inputs(training.gaussians)], training)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="kodim23,kodim05")
    parser.add_argument("--bpp", type=float, default=0.125)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
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
