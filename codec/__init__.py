"""2D Gaussian splatting image codec: image -> .gsi bitstream -> image."""

from codec.api import EncodeReport, decode, decoded_size, encode, encode_with_report, inspect, psnr
from codec.bitstream import Header
from codec.encoder import Progress
from codec.errors import BitstreamError, CodecError, DecodeLimitError, DecodeOptionError, EncodeCancelled, ImageError
from codec.image_io import load_image
from codec.options import DEFAULT_PRESET, MAX_ITERATIONS, EncodeOptions
from codec.pillow_plugin import register_pillow
from codec.presets import MAX_BPP, METHODS, MIN_BPP, RATE_PRESETS, Method

__all__ = [
    "BitstreamError", "CodecError", "DEFAULT_PRESET", "DecodeLimitError", "DecodeOptionError",
    "EncodeCancelled", "EncodeOptions", "MAX_ITERATIONS",
    "EncodeReport", "Header", "ImageError", "MAX_BPP", "METHODS", "MIN_BPP", "Method", "Progress", "RATE_PRESETS",
    "decode", "decoded_size", "encode", "encode_with_report", "inspect", "load_image", "psnr", "register_pillow",
]

register_pillow()
