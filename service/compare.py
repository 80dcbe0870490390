"""What JPEG and WebP (Pillow's encoders) achieve at a given file size: the page's yardstick for a .gsi.

For each format the highest quality setting whose file fits the size is found by bisection (file size
grows with quality); its PSNR is measured on the decoded file, like the codec's own.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

import codec

# Pillow's quality ranges: JPEG above 95 mostly adds bytes, WebP's lossy scale is 0-100.
QUALITY_RANGES = {"jpeg": (1, 95), "webp": (0, 100)}
MAX_SIDE = 16383  # WebP's, the smaller of the two formats' limits


@dataclass(frozen=True)
class Rival:
    format: str
    quality: int
    bytes: int
    bpp: float
    psnr: float
    fits: bool  # False: even the lowest quality is larger than the size asked for


def rivals_at_size(pixels: np.ndarray, max_bytes: int) -> list[Rival]:
    """The best JPEG and WebP of ``pixels`` ([H, W, 3] uint8) no larger than ``max_bytes``."""
    image = Image.fromarray(pixels, "RGB")
    return [_best_fit(image, pixels, fmt, max_bytes) for fmt in QUALITY_RANGES]


def largest_within(encode: Callable[[int], bytes], low: int, high: int, max_bytes: int) -> tuple[int, bytes, bool]:
    """The highest quality in [low, high] whose file ``encode(quality)`` fits ``max_bytes``, by bisection (file
    size grows with quality): (quality, file, True), or (low, its file, False) when even ``low`` is larger."""
    best = low, encode(low)
    if len(best[1]) > max_bytes:
        return *best, False
    while low < high:  # invariant: quality `low` fits
        middle = (low + high + 1) // 2
        trial = encode(middle)
        if len(trial) <= max_bytes:
            low, best = middle, (middle, trial)
        else:
            high = middle - 1
    return *best, True


def _best_fit(image: Image.Image, pixels: np.ndarray, fmt: str, max_bytes: int) -> Rival:
    quality, data, fits = largest_within(lambda q: _encode(image, fmt, q), *QUALITY_RANGES[fmt], max_bytes)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    height, width = pixels.shape[:2]
    return Rival(fmt, quality, len(data), len(data) * 8 / (width * height), codec.psnr(pixels, decoded), fits)


def _encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt.upper(), quality=quality)
    return buffer.getvalue()
