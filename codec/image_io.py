"""Turning whatever Pillow opens into the codec's input: an 8-bit RGB array.

* EXIF orientation is applied, so the picture is stored the way a viewer shows it.
* Grayscale, palette and CMYK images are converted to RGB.
* Alpha is composited over a white background (the codec stores no alpha channel).
* 16-bit and 32-bit integer images are scaled to 8 bits (not clipped); float images are clipped to [0, 1].
  One-channel images are converted to 8 bits in row blocks before they become three channels, so a load
  costs a few bytes per pixel whatever the input's depth (bench/load_memory.py measures it).
* The pixel count is checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from codec.format.bitstream import MAX_SIDE
from codec.errors import ImageError

DEFAULT_MAX_PIXELS = 40_000_000
_BLOCK_VALUES = 1 << 20  # values converted at once: the float temporaries stay a few MB whatever the image size
# How a decoded picture is written as PNG (the CLI and /decode): Huffman coding alone of Pillow's filtered rows is
# about as small as zlib's default on these smooth pictures, and several times faster (docs/api.md,
# bench/decode_sizes.py).
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY}


def load_image(source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:  # [H, W, 3] uint8
    """Read ``source`` (path, encoded bytes, PIL image or array) into an [H, W, 3] uint8 array."""
    if isinstance(source, np.ndarray):
        return _array_to_rgb8(source, max_pixels)
    if isinstance(source, Image.Image):
        return _pil_to_rgb8(source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty_image", "the image is empty")
        return _open_and_convert(io.BytesIO(bytes(source)), max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError("not_found", f"no such image file: {path}")
        with path.open("rb") as handle:
            return _open_and_convert(handle, max_pixels)
    raise TypeError(f"cannot read an image from {type(source).__name__}")


def _open_and_convert(stream, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning is an error here, whatever Pillow's global threshold is.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
            return _pil_to_rgb8(image, max_pixels)
    except ImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError("image_too_large", f"image is too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("unsupported_image", "not an image format Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError("corrupt_image", f"the image is truncated or corrupt: {exc}") from exc


def _pil_to_rgb8(image: Image.Image, max_pixels: int) -> np.ndarray:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("empty_image", f"image has no pixels ({width}x{height})")
    _check_size(width, height, max_pixels)
    image.load()
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # one channel, converted before it is stacked
        gray = np.asarray(image)
        scale = 1.0 if mode == "F" else 65535.0 if mode.startswith("I;16") or gray.max() <= 65535 else 2**32 - 1
        return _array_to_rgb8(gray, max_pixels, scale=scale)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image if mode == "RGB" else image.convert("RGB"))


def _check_size(width: int, height: int, max_pixels: int) -> None:
    """Before anything is decoded or trained: the pixel budget, and the sides a .gsi header can hold."""
    if width * height > max_pixels:
        raise ImageError("image_too_large", f"image has {width}x{height} pixels, more than {max_pixels}")
    if max(width, height) > MAX_SIDE:
        raise ImageError("image_too_large", f"image is {width}x{height}; a side of more than {MAX_SIDE} pixels "
                                            "does not fit the format")


def _array_to_rgb8(array: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS, *,
                   scale: float | None = None) -> np.ndarray:
    """[H, W], [H, W, 1], [H, W, 3] or [H, W, 4] of any real dtype -> [H, W, 3] uint8; ``scale`` is the value
    that means full intensity (default: the integer type's maximum, 1 for floats)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError("bad_shape", f"expected an [H, W], [H, W, 3] or [H, W, 4] array, got {array.shape}")
    _check_size(array.shape[1], array.shape[0], max_pixels)
    if array.dtype == np.uint8 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    if scale is None:
        scale = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
    out = np.empty((*array.shape[:2], 3), np.uint8)
    rows = max(1, _BLOCK_VALUES // (array.shape[1] * array.shape[2]))
    for top in range(0, array.shape[0], rows):
        out[top: top + rows] = _block_to_rgb8(array[top: top + rows], scale)  # one channel broadcasts to three
    return out


def _block_to_rgb8(block: np.ndarray, scale: float) -> np.ndarray:  # [h, W, C] -> [h, W, 3 or 1]
    if block.dtype == np.uint8 and block.shape[2] == 1:
        return block
    unit = block.astype(np.float64)  # in place from here: one temporary of the block's size
    unit /= scale
    np.clip(np.nan_to_num(unit, copy=False), 0.0, 1.0, out=unit)
    if unit.shape[2] == 4:  # alpha over white
        alpha = unit[:, :, 3:]
        unit = unit[:, :, :3] * alpha + (1 - alpha)
    unit *= 255
    return np.round(unit, out=unit)
