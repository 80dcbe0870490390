"""The README's picture: one Kodak image encoded with the default method at 0.125 bpp, beside JPEG and WebP at
the largest file not above ours (the rate–distortion benchmark's settings of both), each shown whole at half
size and as a 1:1 crop of the face, labelled with its bytes, bpp and PSNR.

    python -m bench.showcase             # one encode on the CPU, then writes docs/showcase.png
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import codec
from bench.baselines import CODECS, load_rgb
from bench.metrics import bpp
from bench.paths import KODAK, REPO
from service.compare import largest_within

IMAGE = KODAK / "kodim04.png"
BPP = 0.125
CROP = (150, 250, 406, 506)  # eyes, nose and mouth: the detail a low rate loses first
OUT = REPO / "docs" / "showcase.png"
GAP, LABEL_HEIGHT = 6, 40


@dataclass(frozen=True)
class Panel:
    title: str
    pixels: np.ndarray  # [H, W, 3] uint8, the decoded file
    caption: str


def panels(original: np.ndarray, data: bytes) -> list[Panel]:
    """The original, ours (``data``) and the baselines at the largest file not above ``len(data)``."""
    height, width = original.shape[:2]

    def panel(title: str, file: bytes, decoded: np.ndarray) -> Panel:
        return Panel(title, decoded, f"{len(file):,} bytes, {bpp(len(file), width, height):.3f} bpp, "
                                     f"{codec.psnr(original, decoded):.2f} dB")

    out = [Panel("original", original, f"{width}x{height} Kodak {IMAGE.stem}"),
           panel("gsic (ours)", data, codec.decode(data))]
    for name in ("jpeg", "webp"):
        baseline = CODECS[name]
        quality, file, fits = largest_within(lambda q: baseline.encode(original, q), baseline.qualities[0],
                                             baseline.qualities[-1], len(data))
        if not fits:
            raise SystemExit(f"{baseline.label} cannot make a file of {len(data)} bytes or less of {IMAGE.name}")
        out.append(panel(f"{baseline.label} (quality {quality})", file, baseline.decode(file)))
    return out


def compose(items: list[Panel], crop: tuple[int, int, int, int] = CROP) -> Image.Image:
    """Columns of: title and caption, the whole image at half size with the crop marked, the crop at 1:1."""
    height, width = items[0].pixels.shape[:2]
    column = max(width // 2, crop[2] - crop[0])
    size = (len(items) * column + (len(items) - 1) * GAP, LABEL_HEIGHT + height // 2 + GAP + crop[3] - crop[1])
    sheet = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(sheet)
    title_font, caption_font = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    for k, item in enumerate(items):
        x = k * (column + GAP)
        draw.text((x, 2), item.title, fill="black", font=title_font)
        draw.text((x, 21), item.caption, fill="black", font=caption_font)
        whole = Image.fromarray(item.pixels).resize((width // 2, height // 2), Image.Resampling.LANCZOS)
        sheet.paste(whole, (x, LABEL_HEIGHT))
        draw.rectangle([x + crop[0] // 2, LABEL_HEIGHT + crop[1] // 2, x + crop[2] // 2, LABEL_HEIGHT + crop[3] // 2],
                       outline="yellow")
        sheet.paste(Image.fromarray(item.pixels).crop(crop), (x, LABEL_HEIGHT + height // 2 + GAP))
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.showcase", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the PNG written (default: %(default)s)")
    args = parser.parse_args(argv)
    original = load_rgb(IMAGE)
    data = codec.encode(original, options=codec.EncodeOptions(bpp=BPP, device="cpu"))
    items = panels(original, data)
    compose(items).save(args.out, optimize=True)
    for item in items:
        print(f"{item.title}: {item.caption}", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
