"""2D Gaussian splatting image codec: image -> .gsi bitstream -> image.

Importing the package loads only what a decode needs; the trainer (``codec.train``) and the encode options are
imported on first use of an encode name, so ``/decode``, ``gsic decode`` and Pillow's ``Image.open`` never load it.
"""

import importlib

from codec.api import EncodeReport, decode, decoded_size, encode, encode_with_report, inspect, psnr
from codec.errors import BitstreamError, CodecError, DecodeLimitError, DecodeOptionError, EncodeCancelled, ImageError
from codec.format.bitstream import Header
from codec.image_io import load_image
from codec.pillow_plugin import register_pillow

_ENCODE_NAMES = {
    "DEFAULT_PRESET": "codec.options", "EncodeOptions": "codec.options", "MAX_BPP": "codec.options",
    "MAX_ITERATIONS": "codec.options",
    "MIN_BPP": "codec.options", "RATE_PRESETS": "codec.options", "METHODS": "codec.train.method",
    "Method": "codec.train.method", "Progress": "codec.train.encoder",
}

__all__ = [
    "BitstreamError", "CodecError", "DecodeLimitError", "DecodeOptionError", "EncodeCancelled", "EncodeReport",
    "Header", "ImageError", "decode", "decoded_size", "encode", "encode_with_report", "inspect", "load_image", "psnr",
    "register_pillow", *_ENCODE_NAMES,
]


def __getattr__(name: str):
    if name not in _ENCODE_NAMES:
        raise AttributeError(f"module 'codec' has no attribute {name!r}")
    return getattr(importlib.import_module(_ENCODE_NAMES[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)


register_pillow()
