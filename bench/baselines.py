"""Reference codecs for the rate–distortion benchmark (JPEG, WebP, AVIF, JPEG 2000, JPEG XL and HEIF through
Pillow) and the paper's Table 1.

Each Pillow codec is run as a quality sweep on one image; a sweep point records the real file size
and the metrics of the decoded file, exactly as for our codec. The sweep goes up the quality ladder
and stops at the first point above the highest rate benchmarked, so the rates are bracketed.
JPEG XL and HEIF come from Pillow plugins in the ``bench`` and ``test`` extras; a codec whose plugin is
not installed says so (``CodecUnavailable``) instead of failing inside Pillow.
"""

from __future__ import annotations

import importlib
import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.metrics import bpp, ms_ssim
from codec import psnr

Settings = Callable[[int, int | None], dict]  # (quality, threads) -> Image.save options


class CodecUnavailable(RuntimeError):
    """A baseline codec's Pillow plugin is not installed."""


@dataclass(frozen=True)
class PillowCodec:
    name: str  # key in the results file: "jpeg", "webp", ...
    label: str  # in tables and plots
    format: str  # Pillow's format name
    qualities: tuple[int, ...]  # ascending: the sweep
    settings: Settings  # the Image.save options of one sweep point
    description: str  # settings, for the report
    plugin: str | None = None  # module whose import registers the format with Pillow
    package: str | None = None  # the distribution that provides ``plugin``

    def require(self) -> None:
        """Registers the codec's plugin; ``CodecUnavailable`` (naming the package) when it is missing."""
        if self.plugin is None:
            return
        try:
            importlib.import_module(self.plugin)
        except ImportError as exc:
            raise CodecUnavailable(f"{self.label} needs the package {self.package} "
                                   f"(in the bench and test extras): {exc}") from exc

    def encode(self, image: np.ndarray, quality: int, threads: int | None = None) -> bytes:
        self.require()
        buffer = io.BytesIO()
        Image.fromarray(image, "RGB").save(buffer, format=self.format, **self.settings(quality, threads))
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:  # [H, W, 3] uint8
        self.require()
        with Image.open(io.BytesIO(data), formats=[self.format]) as im:  # the file must be what was written
            return np.asarray(im.convert("RGB"))


def _threads(option: str, threads: int | None) -> dict:
    return {option: threads} if threads else {}


def _jpeg(quality: int, threads: int | None) -> dict:
    return {"quality": quality, "subsampling": 2, "optimize": True}


def _webp(quality: int, threads: int | None) -> dict:
    return {"quality": quality, "method": 6}


def _avif(quality: int, threads: int | None) -> dict:
    return {"quality": quality, "speed": 6, "subsampling": "4:2:0", **_threads("max_threads", threads)}


def _jpeg2000(quality: int, threads: int | None) -> dict:
    # JPEG 2000's knob is the rate itself: OpenJPEG's compression ratio against 24 bpp, here given as
    # thousandths of a bit per pixel so that the ladder is ascending integers like the others.
    return {"quality_mode": "rates", "quality_layers": [24_000 / quality], "irreversible": True, "mct": 1,
            "no_jp2": True}


def _jxl(quality: int, threads: int | None) -> dict:
    return {"quality": quality, "effort": 7, **_threads("num_threads", threads)}


def _heif(quality: int, threads: int | None) -> dict:
    params = {"preset": "slow", "tune": "psnr", **({"x265:pools": str(threads)} if threads else {})}
    return {"quality": quality, "chroma": 420, "enc_params": params}


# Quality ladders, ascending; dense where quality changes the rate fast. A sweep stops at the first point
# above the highest benchmarked rate, so the top of a ladder is only reached for high rates.
_JPEG_Q = (1, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80,
           85, 88, 90, 92, 94, 95, 96, 97, 98, 100)
_WEBP_Q = (0,) + _JPEG_Q
_AVIF_Q = (0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100)  # ~ 1 step of 63
# millibits per pixel: the benchmark's rates themselves, and points between them
_JPEG2000_Q = (20, 30, 42, 50, 66, 80, 100, 125, 150, 183, 215, 250, 300, 350, 420, 500, 600, 750, 1000, 1250,
               1500, 2000, 2500, 3000, 4000)
_JXL_Q = tuple(range(0, 96, 5))  # 0 is the lowest the plugin takes; the top end is near lossless
_HEIF_Q = tuple(range(0, 51, 2)) + tuple(range(55, 101, 5))  # dense at the low end, where the benchmark's rates lie

CODECS: dict[str, PillowCodec] = {
    "jpeg": PillowCodec("jpeg", "JPEG", "JPEG", _JPEG_Q, _jpeg,
                        "Pillow/libjpeg, 4:2:0, optimize=True, quality 1–100"),
    "webp": PillowCodec("webp", "WebP", "WEBP", _WEBP_Q, _webp,
                        "Pillow/libwebp, lossy, method 6, quality 0–100"),
    "avif": PillowCodec("avif", "AVIF", "AVIF", _AVIF_Q, _avif,
                        "Pillow/libavif, speed 6, 4:2:0, quality 0–100"),
    "jpeg2000": PillowCodec("jpeg2000", "JPEG 2000", "JPEG2000", _JPEG2000_Q, _jpeg2000,
                            "Pillow/OpenJPEG, 9/7 wavelet, colour transform, one layer, bare codestream, "
                            "rate 0.02–4 bpp"),
    "jxl": PillowCodec("jxl", "JPEG XL", "JXL", _JXL_Q, _jxl,
                       "pillow-jxl-plugin/libjxl, lossy, effort 7, bare codestream, quality 0–95",
                       plugin="pillow_jxl", package="pillow-jxl-plugin"),
    "heif": PillowCodec("heif", "HEIF", "HEIF", _HEIF_Q, _heif,
                        "pillow-heif/libheif/x265 HEVC intra, preset slow, tune psnr, 4:2:0, quality 0–100",
                        plugin="pillow_heif.HeifImagePlugin", package="pillow-heif"),
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


