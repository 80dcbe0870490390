"""The codec's public contract: ``encode(image, bpp) -> bytes``, ``decode(bytes) -> image``, ``inspect``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codec.decode.decoder import MAX_EVALUATIONS, decode_array
from codec.decode.view import plan_view
from codec.format.bitstream import MAX_PIXELS, Header, parse_header
from codec.image_io import DEFAULT_MAX_PIXELS, load_image

if TYPE_CHECKING:
    from codec.options import EncodeOptions
    from codec.train.encoder import ProgressCallback


@dataclass(frozen=True)
class EncodeReport:
    data: bytes  # the .gsi bitstream
    width: int
    height: int
    bpp: float  # real: len(data) * 8 / pixels
    psnr: float  # of the decoded bitstream against the input, dB
    n_gaussians: int
    seconds: float
    device: str


def encode(image, bpp: float | None = None, **options) -> bytes:
    """Encode an image (path, bytes, PIL image or [H, W, 3] uint8 array) to a .gsi bitstream."""
    return encode_with_report(image, bpp, **options).data


def encode_with_report(
    image,
    bpp: float | None = None,
    *,
    options: EncodeOptions | None = None,
    progress: ProgressCallback | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    **fields,
) -> EncodeReport:
    """Encode and report what was achieved. Options come as one ``EncodeOptions`` or as its fields
    (``bpp``, ``preset``, ``method``, ``iterations``, ``seed``, ``device``, ``backend``); neither bpp nor preset: the
    "medium" preset. ``progress(p)`` returning False cancels (EncodeCancelled)."""
    from codec.options import EncodeOptions  # the trainer loads on the first encode, never for a decode
    from codec.train.encoder import encode_array

    started = time.perf_counter()
    if options is None:
        options = EncodeOptions(bpp=bpp, **fields)
    elif bpp is not None or fields:
        raise TypeError("give options= or its fields, not both")
    pixels = load_image(image, max_pixels=max_pixels)
    result = encode_array(pixels, options, progress)
    height, width = pixels.shape[:2]
    return EncodeReport(
        data=result.data,
        width=width,
        height=height,
        bpp=len(result.data) * 8 / (width * height),
        psnr=psnr(pixels, decode(result.data)),
        n_gaussians=result.n_gaussians,
        seconds=time.perf_counter() - started,
        device=result.device,
    )


def decode(data, *, device: str | None = None, width: int | None = None, height: int | None = None,
           scale: float | None = None, box=None, max_pixels: int = MAX_PIXELS,
           max_evaluations: int = MAX_EVALUATIONS) -> np.ndarray:  # [H, W, 3] uint8
    """Decode a .gsi bitstream (bytes-like, or a path to a file) to pixels; the same bytes always give the
    same pixels on CPU.

    ``box=(left, top, right, bottom)`` (pixels of the encoded picture) renders only that region;
    ``width`` and/or ``height`` (one alone keeps the aspect) or ``scale`` render it at that size, directly
    from the Gaussians. Bad options raise ``DecodeOptionError``; an output above ``max_pixels``, or a render
    of more than ``max_evaluations`` Gaussian-pixel pairs, ``DecodeLimitError`` (checked before rendering).
    """
    return decode_array(_bitstream_bytes(data), device=device, width=width, height=height, scale=scale, box=box,
                        max_pixels=max_pixels, max_evaluations=max_evaluations)


def decoded_size(header: Header, *, width: int | None = None, height: int | None = None,
                 scale: float | None = None, box=None) -> tuple[int, int]:
    """(width, height) that ``decode`` with these options returns, checked without rendering."""
    view = plan_view(header.width, header.height, width=width, height=height, scale=scale, box=box)
    return view.width, view.height


def inspect(data) -> Header:
    """Parse and validate the header of a .gsi bitstream (bytes-like or a path) without rendering it."""
    return parse_header(_bitstream_bytes(data))


def _bitstream_bytes(data) -> bytes:
    if isinstance(data, (str, os.PathLike)):
        return Path(data).read_bytes()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"a bitstream is bytes or a path, not {type(data).__name__}")


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all pixels and channels of two 8-bit images."""
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
