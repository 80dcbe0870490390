"""Decode-side timings behind two choices: thumbnails rendered from the Gaussians, and /decode's PNG level.

1. A 128-px-wide thumbnail: ``codec.decode(data, width=128)`` against a full decode plus Pillow's resize
   (Lanczos, what ``Image.thumbnail`` uses by default).
2. The PNG answer of POST /decode: Pillow's zlib levels 0-9 on the full decoded image, time and size, and
   level 1 with zlib's run-length and Huffman-only strategies.

Encodes one Kodak image through the library first (``--iterations`` shortens that; the decode's cost
depends on the Gaussian count the rate sets, not on how long the encoder ran). Prints JSON lines.

    .venv/bin/python -m bench.decode_sizes [--image PATH] [--bpp 0.125] [--iterations N] [--repeats 7]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

import codec
from bench.paths import KODAK

DEFAULT_IMAGE = KODAK / "kodim23.png"
THUMB_WIDTH = 128


def median_ms(run, repeats: int) -> float:
    run()  # warm-up: numba kernels compile or load from cache on first use
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def thumbnail_rows(data: bytes, repeats: int) -> list[dict]:
    header = codec.inspect(data)
    height = round(header.height * THUMB_WIDTH / header.width)

    def full_then_resize():
        Image.fromarray(codec.decode(data)).resize((THUMB_WIDTH, height), Image.Resampling.LANCZOS)

    full = codec.decode(data)
    reference = np.asarray(Image.fromarray(full).resize((THUMB_WIDTH, height), Image.Resampling.LANCZOS))
    direct = codec.decode(data, width=THUMB_WIDTH)
    return [
        {"case": "thumbnail_direct", "width": THUMB_WIDTH, "ms": median_ms(lambda: codec.decode(data, width=THUMB_WIDTH), repeats),
         "psnr_vs_resize": codec.psnr(reference, direct)},
        {"case": "thumbnail_full_decode_plus_resize", "width": THUMB_WIDTH, "ms": median_ms(full_then_resize, repeats)},
        {"case": "full_decode", "width": header.width, "ms": median_ms(lambda: codec.decode(data), repeats)},
    ]


PNG_STRATEGIES = {"default": zlib.Z_DEFAULT_STRATEGY, "rle": zlib.Z_RLE, "huffman_only": zlib.Z_HUFFMAN_ONLY}


def png_rows(pixels: np.ndarray, repeats: int) -> list[dict]:
    image = Image.fromarray(pixels)
    cases = [(level, "default") for level in range(10)] + [(1, "rle"), (1, "huffman_only")]
    rows = []
    for level, strategy in cases:
        def save(level=level, strategy=strategy) -> bytes:
            buffer = io.BytesIO()
            image.save(buffer, "PNG", compress_level=level, compress_type=PNG_STRATEGIES[strategy])
            return buffer.getvalue()

        rows.append({"case": "png", "compress_level": level, "strategy": strategy, "ms": median_ms(save, repeats),
                     "bytes": len(save())})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decode_sizes", description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--bpp", type=float, default=0.125)
    parser.add_argument("--iterations", type=int, help="encoder steps (default: the codec's)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    report = codec.encode_with_report(args.image, args.bpp, iterations=args.iterations, device="cpu")
    print(json.dumps({"image": args.image.name, "width": report.width, "height": report.height, "bpp": report.bpp,
                      "n_gaussians": report.n_gaussians, "psnr": report.psnr}))
    for row in thumbnail_rows(report.data, args.repeats) + png_rows(codec.decode(report.data), args.repeats):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
