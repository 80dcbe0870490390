"""Reference codecs for the rate–distortion benchmark (JPEG, WebP, AVIF through Pillow) and the paper's Table 1.

Each Pillow codec is run as a quality sweep on one image; a sweep point records the real file size
and the metrics of the decoded file, exactly as for our codec. The sweep goes up the quality ladder
and stops at the first point above the highest rate benchmarked, so the rates are bracketed.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.metrics import bpp, ms_ssim, psnr


@dataclass(frozen=True)
class PillowCodec:
    name: str  # key in the results file: "jpeg", "webp", "avif"
    label: str  # in tables and plots
    format: str  # Pillow's format name
    qualities: tuple[int, ...]  # ascending: the sweep
    options: tuple[tuple[str, object], ...]  # passed to Image.save
    description: str  # settings, for the report

    def encode(self, image: np.ndarray, quality: int, threads: int | None = None) -> bytes:
        options = dict(self.options)
        if self.name == "avif" and threads:
            options["max_threads"] = threads
        buffer = io.BytesIO()
        Image.fromarray(image, "RGB").save(buffer, format=self.format, quality=quality, **options)
        return buffer.getvalue()

    @staticmethod
    def decode(data: bytes) -> np.ndarray:  # [H, W, 3] uint8
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


# Quality ladders, ascending; dense where quality changes the rate fast. A sweep stops at the first point
# above the highest benchmarked rate, so the top of a ladder is only reached for high rates.
_JPEG_Q = (1, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80,
           85, 88, 90, 92, 94, 95, 96, 97, 98, 100)
_WEBP_Q = (0,) + _JPEG_Q
_AVIF_Q = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100)  # ~ 1 step of 63

CODECS: dict[str, PillowCodec] = {
    "jpeg": PillowCodec("jpeg", "JPEG", "JPEG", _JPEG_Q, (("subsampling", 2), ("optimize", True)),
                        "Pillow/libjpeg, 4:2:0, optimize=True, quality 1–100"),
    "webp": PillowCodec("webp", "WebP", "WEBP", _WEBP_Q, (("method", 6),),
                        "Pillow/libwebp, lossy, method 6, quality 0–100"),
    "avif": PillowCodec("avif", "AVIF", "AVIF", _AVIF_Q, (("speed", 6), ("subsampling", "4:2:0")),
                        "Pillow/libavif, speed 6, 4:2:0, quality 0–100"),
}


def sweep_point(codec: PillowCodec, image: np.ndarray, quality: int, threads: int | None = None) -> dict:
    """Encode ``image`` at ``quality``, decode the real bytes, and measure."""
    height, width = image.shape[:2]
    started = time.perf_counter()
    data = codec.encode(image, quality, threads)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded = codec.decode(data)
    decode_s = time.perf_counter() - started
    return {
        "codec": codec.name, "quality": quality, "width": width, "height": height, "bytes": len(data),
        "bpp": bpp(len(data), width, height), "psnr": psnr(image, decoded), "ms_ssim": ms_ssim(image, decoded),
        "encode_s": encode_s, "decode_s": decode_s,
    }


def sweep(codec: PillowCodec, image: np.ndarray, max_rate: float, done: dict[int, dict] | None = None,
          threads: int | None = None) -> Iterator[dict]:
    """Sweep points of ``codec`` on ``image`` by rising quality until one lies above ``max_rate``.

    Points already in ``done`` (by quality) are reused, not re-encoded; only new points are yielded.
    """
    done = done or {}
    for quality in codec.qualities:
        point = done.get(quality)
        if point is None:
            point = sweep_point(codec, image, quality, threads)
            yield point
        if point["bpp"] > max_rate:
            return


def sweep_complete(codec: PillowCodec, done: dict[int, dict], max_rate: float) -> bool:
    """Whether the points in ``done`` already make the sweep ``sweep`` would run (nothing left to encode)."""
    for quality in codec.qualities:
        point = done.get(quality)
        if point is None:
            return False
        if point["bpp"] > max_rate:
            return True
    return True


# --- the paper's Table 1 ---------------------------------------------------------------------------------

_ROW = re.compile(r"^\|(.+)\|\s*$")


def parse_paper_table(path: Path | str) -> dict[str, list[tuple[float, float]]]:
    """Per-image (bpp, PSNR) points of the paper's Table 1, from a markdown table with columns
    ``image | PSNR a | bpp a | PSNR b | bpp b | ...``. The bold ``average`` row is kept as "average".
    """
    table: dict[str, list[tuple[float, float]]] = {}
    header: list[str] | None = None
    for line in Path(path).read_text().splitlines():
        match = _ROW.match(line.strip())
        if not match:
            if table:
                break  # the end of Table 1; the tables after it have other columns
            continue
        cells = [c.strip().strip("*").strip() for c in match.group(1).split("|")]
        if header is None:
            if cells and cells[0].lower() == "image" and any(c.lower().startswith("psnr") for c in cells):
                header = [c.lower() for c in cells]
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the |---|---| rule
        points = []
        for k, name in enumerate(header):
            if name.startswith("psnr "):
                suffix = name[len("psnr "):]
                j = header.index(f"bpp {suffix}")
                points.append((float(cells[j]), float(cells[k])))
        table[cells[0]] = sorted(points)
    if not table:
        raise ValueError(f"no Table 1 rows found in {path}")
    return table


def load_rgb(path: Path | str) -> np.ndarray:  # [H, W, 3] uint8
    from PIL import ImageOps

    with Image.open(path) as im:
        return np.array(ImageOps.exif_transpose(im).convert("RGB"))  # a writable copy


