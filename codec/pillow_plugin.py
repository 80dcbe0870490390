"""Pillow plugin: ``Image.open("x.gsi")`` decodes, ``im.save("x.gsi", bpp=0.125)`` encodes.

``import codec`` registers it (``register_pillow`` is idempotent and may be called again): like Pillow's own
plugins it only adds the ``GSI`` format, the ``.gsi`` extension and an opener that claims files starting
with the ``GSIC`` magic, so other files reach the other plugins and nothing is imported or slowed down.

``Image.draft("RGB", (w, h))`` -- which ``Image.thumbnail`` calls -- makes the load render the Gaussians
directly at a smaller size instead of decoding in full and resizing.
"""

from __future__ import annotations

import math
import numbers

from PIL import Image, ImageFile

from codec.api import decode, encode, inspect
from codec.format.bitstream import HEADER_PREFIX, MAGIC, declared_length

FORMAT = "GSI"
EXTENSION = ".gsi"
MIME = "image/x-gsi"
DEFAULT_PRESET = "medium"
_SAVE_OPTIONS = ("bpp", "preset", "method", "iterations", "seed", "device")


def _read_bitstream(fp) -> bytes:
    """The file's bytes: its header, checked, then only the length it declares and one byte more (so that
    a file followed by more bytes is still refused, without reading them all)."""
    head = fp.read(HEADER_PREFIX)
    total = declared_length(head)  # a malformed header raises BitstreamError before anything more is read
    return head + fp.read(total - len(head) + 1) if len(head) <= total else head


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class GsiImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "2D Gaussian splatting image (gsic)"

    def _open(self) -> None:
        self._bitstream = _read_bitstream(self.fp)
        header = inspect(self._bitstream)  # a malformed file raises BitstreamError, a ValueError
        self._mode = "RGB"
        self._size = (header.width, header.height)
        self.info["n_gaussians"] = header.n_gaussians
        self._set_tile()

    def _set_tile(self) -> None:
        # The tile carries the bitstream: the decoder renders it at the tile's size (see draft).
        self.tile = [ImageFile._Tile(FORMAT, (0, 0, *self.size), 0, (self._bitstream,))]

    def draft(self, mode, size):
        """Render at the smallest size covering ``size`` (aspect kept), never larger than encoded."""
        if not self.tile or size is None:  # already loaded: too late to choose the size
            return None
        if len(size) != 2 or not all(isinstance(side, numbers.Real) and math.isfinite(side) and side > 0
                                     for side in size):
            raise ValueError(f"draft size must be two finite numbers > 0, got {size!r}")
        width, height = self.size
        shrink = max(size[0] / width, size[1] / height)
        if shrink >= 1:
            return None
        self._size = (max(1, math.ceil(width * shrink)), max(1, math.ceil(height * shrink)))
        self._set_tile()
        return self.mode, (0, 0, *self.size)



class _GsiDecoder(ImageFile.PyDecoder):
    _pulls_fd = True  # the bitstream comes in the tile's arguments: no chunked reads of the file

    def decode(self, buffer):
        (bitstream,) = self.args
        pixels = decode(bitstream, width=self.state.xsize, height=self.state.ysize)
        self.set_as_raw(pixels.tobytes())
        return -1, 0


def _save(im: Image.Image, fp, filename) -> None:
    options = {name: im.encoderinfo[name] for name in _SAVE_OPTIONS if im.encoderinfo.get(name) is not None}
    if "bpp" not in options:
        options.setdefault("preset", DEFAULT_PRESET)
    fp.write(encode(im, options.pop("bpp", None), **options))


def register_pillow() -> None:
    """Make Pillow open and save .gsi files (done by ``import codec``)."""
    Image.register_open(FORMAT, GsiImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder(FORMAT, _GsiDecoder)
