"""POST /decode: a .gsi bitstream in, a PNG out, synchronously."""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

import codec
from codec.decode.view import parse_box
from codec.image_io import PNG_OPTIONS
from service.deps import CpuSlotsDep, MetricsDep, SettingsDep
from service.errors import Problem, problems

log = logging.getLogger("gsic.service.decode")

router = APIRouter(tags=["decode"])

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "The bitstream as the raw body, or as the part named `file` of a multipart form.",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
        },
    }
}


def header_fields(header) -> dict[str, str]:
    """The bitstream header as ``X-Gsic-*`` response headers (``n_gaussians`` -> ``X-Gsic-N-Gaussians``)."""
    values = dataclasses.asdict(header) if dataclasses.is_dataclass(header) else dict(vars(header))
    out = {}
    for name, value in values.items():
        if isinstance(value, (bytes, bytearray, list, tuple, dict)) or value is None:
            continue
        label = "-".join(part.capitalize() for part in name.split("_"))
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        if text.isprintable() and len(text) < 200:
            out[f"X-Gsic-{label}"] = text
    return out


# An 8x8 gradient encoded by codec.encode (preset high, 2 iterations): decoded once as the app starts, so the
# decoder's kernels are compiled (about 12 s on a cold numba cache here) or loaded before any request's
# GSIC_DECODE_TIMEOUT runs, not under it.
WARM_UP = Path(__file__).resolve().parents[1] / "warmup.gsi"


def warm_up(device: str) -> None:
    try:
        _render_png(WARM_UP.read_bytes(), device, {}, 64, 1 << 20)
    except Exception:  # noqa: BLE001 - a decoder that cannot start shows in the first request's answer
        log.exception("the decoder warm-up failed")


def _render_png(data: bytes, device: str, size: dict, max_pixels: int, max_evaluations: int) -> bytes:
    pixels = codec.decode(data, device=device, max_pixels=max_pixels, max_evaluations=max_evaluations, **size)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB").save(buffer, "PNG", **PNG_OPTIONS)
    return buffer.getvalue()


async def _read_bitstream(request: Request, max_bytes: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        try:
            async with request.form(max_files=1, max_fields=16) as form:
                part = form.get("file")
                if not isinstance(part, UploadFile):
                    raise Problem(422, "missing_file", "the multipart form has no file part named 'file'")
                return await part.read(max_bytes + 1)
        except (MultiPartException, HTTPException) as exc:  # Starlette turns the parser's error into a 400
            detail = exc.message if isinstance(exc, MultiPartException) else exc.detail
            raise Problem(400, "bad_multipart", f"the multipart body cannot be parsed: {detail}") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise Problem(413, "body_too_large", f"the request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/decode",
    response_class=Response,
    response_model=None,
    summary="Decode a .gsi bitstream to PNG, at any size or region",
    description="Without parameters the whole picture at its encoded size. `width` / `height` / `scale` and "
                "`box` render the Gaussians directly at that size and region (a thumbnail, or a zoom that is "
                "not upscaled pixels); the output must fit `GSIC_MAX_PIXELS` and `GSIC_DECODE_MAX_PIXELS`, and "
                "the work `GSIC_DECODE_MAX_EVALUATIONS` (413 `decode_too_costly`); one that runs past "
                "`GSIC_DECODE_TIMEOUT` answers 503 `decode_timeout`.",
    openapi_extra=_BODY_DOC,
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "The decoded image; the bitstream header is echoed in X-Gsic-* headers "
                                    "(X-Gsic-Version, X-Gsic-Width, X-Gsic-Height, X-Gsic-N-Gaussians, ...), the "
                                    "rendered size in X-Gsic-Output-Width and X-Gsic-Output-Height."},
               **problems(400, 413, 422, 503)},
)
async def decode(
    request: Request,
    settings: SettingsDep,
    metrics: MetricsDep,
    slots: CpuSlotsDep,
    width: Annotated[int | None, Query(ge=1, description="Output width in pixels; alone, the height follows "
                                       "the aspect of the box.")] = None,
    height: Annotated[int | None, Query(ge=1, description="Output height in pixels.")] = None,
    scale: Annotated[float | None, Query(gt=0, allow_inf_nan=False, description="Output size as a factor of "
                                         "the box (instead of width / height).")] = None,
    box: Annotated[str | None, Query(max_length=200, description="Region to render, `left,top,right,bottom` "
                                     "in pixels of the encoded picture (default: all of it).")] = None,
) -> Response:
    try:
        size = {"width": width, "height": height, "scale": scale, "box": None if box is None else parse_box(box)}
    except codec.DecodeOptionError as exc:
        raise Problem(422, "invalid_parameters", str(exc), field=exc.field) from None
    data = await _read_bitstream(request, settings.max_upload_bytes)
    if not data:
        raise Problem(422, "empty_bitstream", "the request has no bitstream (empty body)")
    try:
        header = codec.inspect(data)
    except codec.BitstreamError as exc:
        raise Problem(422, "invalid_bitstream", str(exc), field=exc.field) from None
    except (ValueError, IndexError, OverflowError) as exc:  # the header parser should say BitstreamError
        raise Problem(422, "invalid_bitstream", f"{type(exc).__name__}: {exc}", field="header") from None
    try:
        out_width, out_height = codec.decoded_size(header, **size)
    except codec.DecodeOptionError as exc:
        raise Problem(422, "invalid_parameters", str(exc), field=exc.field) from None
    max_pixels = min(settings.max_pixels, settings.decode_max_pixels)
    if out_width * out_height > max_pixels:
        raise Problem(413, "image_too_large", f"the decode would be {out_width}x{out_height} pixels, more than "
                                              f"this server renders ({max_pixels})")
    started = time.perf_counter()
    try:
        png = await slots.run(_render_png, data, settings.decode_device, size, max_pixels,
                              settings.decode_max_evaluations, timeout=settings.decode_timeout)
    except TimeoutError:
        raise Problem(503, "decode_timeout", f"the decode did not finish within {settings.decode_timeout:g} s "
                      "(GSIC_DECODE_TIMEOUT), waiting for a decode slot included; the server is busy",
                      headers={"Retry-After": "1"}) from None
    except codec.DecodeLimitError as exc:
        raise Problem(413, "decode_too_costly", f"{exc}; this server's limit (GSIC_DECODE_MAX_EVALUATIONS)",
                      field=exc.field) from None
    except codec.BitstreamError as exc:
        raise Problem(422, "invalid_bitstream", str(exc), field=exc.field) from None
    except (ValueError, IndexError, OverflowError, EOFError) as exc:
        log.warning("decode raised %s past the header check: %s", type(exc).__name__, exc)
        raise Problem(422, "invalid_bitstream", f"{type(exc).__name__}: {exc}", field="payload") from None
    metrics.decode_seconds.observe(time.perf_counter() - started)
    headers = {"Content-Disposition": 'inline; filename="decoded.png"', **header_fields(header),
               "X-Gsic-Output-Width": str(out_width), "X-Gsic-Output-Height": str(out_height)}
    return Response(png, media_type="image/png", headers=headers)
