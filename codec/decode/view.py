"""What a decode renders: which part of the picture (``box``) and at what size (``width``/``height``/``scale``).

The Gaussians are a continuous picture, so any size is rendered directly: the means and covariances are
mapped into the output's pixel grid and the usual render runs there. Two details keep the result honest:

* scale 1 (a plain crop) only translates the means by whole pixels, which is exact in float32, so a box
  decode gives the very pixels of the same crop of the full decode;
* shrinking widens each Gaussian by the variance of the box filter an area downsample applies
  ((1 - s^2) / 12 output pixels^2 along an axis shrunk by s), and lowers its opacity by the matching peak
  ratio, so a small render matches an area-downsampled full one instead of aliasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from codec.errors import DecodeLimitError, DecodeOptionError


@dataclass(frozen=True)
class View:
    left: float  # the box, in pixels of the encoded picture
    top: float
    right: float
    bottom: float
    width: int  # the output, pixels
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def map(self, means: np.ndarray, scales: np.ndarray, rotations: np.ndarray, opacities: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # float32 [N, 2], [N, 2], [N], [N]
        """The Gaussians of the encoded picture, placed in this view's output pixel grid."""
        sx = self.width / (self.right - self.left)
        sy = self.height / (self.bottom - self.top)
        origin = np.array([self.left, self.top], dtype=means.dtype)
        if sx == 1 and sy == 1:
            return means - origin, scales, rotations, opacities
        factor = np.array([sx, sy], dtype=means.dtype)
        rotations64 = rotations.astype(np.float64)
        cos, sin = np.cos(rotations64), np.sin(rotations64)
        var1, var2 = np.square(scales[:, 0].astype(np.float64)), np.square(scales[:, 1].astype(np.float64))
        # Covariance R diag(var) R^T, stretched by diag(sx, sy), plus the box filter of a downsample.
        xx = (cos * cos * var1 + sin * sin * var2) * sx * sx
        xy = cos * sin * (var1 - var2) * sx * sy
        yy = (sin * sin * var1 + cos * cos * var2) * sy * sy
        det = xx * yy - xy * xy
        xx = xx + max(0.0, 1 - sx * sx) / 12
        yy = yy + max(0.0, 1 - sy * sy) / 12
        peak = np.sqrt(np.maximum(det, 0) / (xx * yy - xy * xy))
        # Eigen-decomposition of the 2x2 covariance back to (scales, rotation).
        half_sum, half_diff = (xx + yy) / 2, (xx - yy) / 2
        radius = np.sqrt(half_diff * half_diff + xy * xy)
        new_scales = np.stack([np.sqrt(half_sum + radius), np.sqrt(np.maximum(half_sum - radius, 1e-12))], 1)
        new_rotations = 0.5 * np.atan2(2 * xy, xx - yy)
        return ((means - origin) * factor, new_scales.astype(scales.dtype), new_rotations.astype(rotations.dtype),
                opacities * peak.astype(opacities.dtype))


def plan_view(
    image_width: int,
    image_height: int,
    *,
    width: int | None = None,
    height: int | None = None,
    scale: float | None = None,
    box: tuple[float, float, float, float] | None = None,
    max_pixels: int | None = None,
) -> View:
    """Check the asked region and size against the picture; one of width / height missing keeps the box's aspect."""
    left, top, right, bottom = _box(box, image_width, image_height)
    box_w, box_h = right - left, bottom - top
    if scale is not None and (width is not None or height is not None):
        raise DecodeOptionError("scale", "give a scale or a width / height, not both")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, Real) or not math.isfinite(scale) or scale <= 0:
            raise DecodeOptionError("scale", f"must be a finite number above 0, got {scale!r}")
        out_w, out_h = _side(box_w * scale), _side(box_h * scale)
    else:
        for name, value in (("width", width), ("height", height)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, Integral) or value < 1):
                raise DecodeOptionError(name, f"must be a whole number of pixels, at least 1, got {value!r}")
        out_w = int(width) if width is not None else _side(box_w * height / box_h) if height is not None else _side(box_w)
        out_h = int(height) if height is not None else _side(box_h * out_w / box_w)
    if max_pixels is not None and out_w * out_h > max_pixels:
        raise DecodeLimitError("size", f"a {out_w}x{out_h} output is more than the {max_pixels} pixels allowed")
    return View(left, top, right, bottom, out_w, out_h)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"left,top,right,bottom"`` (a command line's or a query string's box) as four numbers."""
    try:
        left, top, right, bottom = (float(part) for part in text.split(","))
    except ValueError:
        raise DecodeOptionError("box", f"expected left,top,right,bottom (four numbers), got {text!r}") from None
    return left, top, right, bottom


def _side(length: float) -> int:
    if not length < 1 << 31:
        raise DecodeOptionError("size", f"an output side of {length:.0f} pixels is absurd")
    return max(1, round(length))


def _box(box, image_width: int, image_height: int) -> tuple[float, float, float, float]:
    if box is None:
        return 0.0, 0.0, float(image_width), float(image_height)
    try:
        left, top, right, bottom = (float(v) for v in box)
    except (TypeError, ValueError):
        raise DecodeOptionError("box", f"must be four numbers (left, top, right, bottom), got {box!r}") from None
    if not (0 <= left < right <= image_width and 0 <= top < bottom <= image_height):
        raise DecodeOptionError("box", f"({left:g}, {top:g}, {right:g}, {bottom:g}) is not a non-empty region of "
                                       f"the {image_width}x{image_height} picture")
    return left, top, right, bottom
