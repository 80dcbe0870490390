"""Checking an uploaded image before it is queued, so a bad one is refused with its 4xx at once.

1. The format is sniffed from the first bytes (the client's Content-Type and file name are ignored).
2. ``codec.load_image`` reads the header, checks the pixel count before decoding (Pillow's
   decompression-bomb warning is an error there), then decodes it fully (truncation shows up here).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from fastapi import UploadFile

import codec
from codec import EncodeOptions
from service.errors import Problem
from service.jobs import client_params

# (magic at offset 0, format); WebP and AVIF/HEIF are checked separately (their magic is not at offset 0).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"P5", "pgm"),
    (b"P6", "ppm"),
)
_FTYP_BRANDS = {b"avif": "avif", b"avis": "avif", b"heic": "heif", b"heix": "heif", b"mif1": "heif"}

# Formats Pillow always reads; AVIF/HEIF depend on the build, so for them "unsupported" stays 415.
_ALWAYS_READABLE = {"png", "jpeg", "gif", "webp", "bmp", "tiff", "pgm", "ppm"}
SUPPORTED_FORMATS = ("png", "jpeg", "gif", "webp", "bmp", "tiff", "pgm", "ppm", "avif")

# ImageError.code -> (HTTP status, problem code)
_IMAGE_ERRORS = {
    "unsupported_image": (415, "unsupported_image"),
    "image_too_large": (413, "image_too_large"),
    "corrupt_image": (422, "corrupt_image"),
    "empty_image": (422, "empty_image"),
}


def sniff_format(data: bytes) -> str | None:
    """The image format the bytes start with, or None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12])
    return None


def check_image(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Sniff and fully read an upload; returns (format, width, height) or raises a Problem."""
    fmt, pixels = load_upload(data, max_pixels)
    height, width = pixels.shape[:2]
    return fmt, int(width), int(height)


def load_upload(data: bytes, max_pixels: int) -> tuple[str, np.ndarray]:
    """Sniff and fully read an upload: (format, its [H, W, 3] uint8 pixels), or raise a Problem."""
    if not data:
        raise Problem(422, "empty_image", "the uploaded file is empty")
    fmt = sniff_format(data)
    if fmt is None:
        raise Problem(415, "unsupported_image",
                      f"the upload is not an image in a supported format ({', '.join(SUPPORTED_FORMATS)}); "
                      "the format is read from the bytes, not from the Content-Type")
    try:
        return fmt, codec.load_image(data, max_pixels=max_pixels)
    except codec.ImageError as exc:
        status, code = _IMAGE_ERRORS.get(exc.code, (422, exc.code or "invalid_image"))
        if code == "unsupported_image" and fmt in _ALWAYS_READABLE:
            # It starts like a PNG (say) but Pillow cannot identify it: a broken file, not a foreign format.
            status, code = 422, "corrupt_image"
        raise Problem(status, code, str(exc)) from None
    except (ValueError, OSError, EOFError, SyntaxError, MemoryError) as exc:  # belt and braces: a reader bug
        raise Problem(422, "corrupt_image", f"the image cannot be read: {type(exc).__name__}: {exc}") from None


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """The whole part; the body cap already holds, this is a backstop for a part read past it."""
    data = await file.read(max_bytes + 1)
    await file.close()
    if len(data) > max_bytes:
        raise Problem(413, "body_too_large", f"the file is larger than {max_bytes} bytes")
    return data


def fingerprint(data: bytes, params: EncodeOptions) -> str:
    digest = hashlib.sha256(data)
    digest.update(json.dumps(client_params(params), sort_keys=True).encode())
    return digest.hexdigest()
