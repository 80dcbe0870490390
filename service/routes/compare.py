"""POST /compare: what JPEG and WebP give for an image at a given file size (the web page's comparison)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field

from service.compare import MAX_SIDE, rivals_at_size
from service.deps import ClientDep, CompareShareDep, CompareSlotsDep, SettingsDep
from service.errors import Problem, problems
from service.uploads import load_upload, read_upload

router = APIRouter(tags=["compare"])


class Rival(BaseModel):
    format: str = Field(description="jpeg or webp (Pillow's encoders).")
    quality: int = Field(description="The highest quality setting whose file fits.")
    bytes: int
    bpp: float
    psnr: float = Field(description="Of the decoded file against the image, dB.")
    fits: bool = Field(description="False when even the lowest quality is larger than the size asked for.")


class Comparison(BaseModel):
    width: int
    height: int
    max_bytes: int
    rivals: list[Rival]


def _compare(data: bytes, max_pixels: int, max_bytes: int) -> Comparison:
    limits = (f"/compare measures images of at most {max_pixels} pixels (GSIC_COMPARE_MAX_PIXELS or "
              f"GSIC_MAX_PIXELS, the smaller) and sides of at most {MAX_SIDE} (WebP's limit)")
    try:  # the same checks, and the same problem answers, as an encode upload
        _, pixels = load_upload(data, max_pixels)
    except Problem as exc:
        if exc.code != "image_too_large":
            raise
        raise Problem(413, "image_too_large", f"{exc.message}; {limits}") from None
    height, width = pixels.shape[:2]
    if max(width, height) > MAX_SIDE:
        raise Problem(413, "image_too_large", f"the image is {width}x{height}; {limits}")
    # JSON has no infinity: a lossless rival (a flat image) is reported as 999 dB, as jobs do.
    rivals = [Rival(**{**vars(r), "psnr": r.psnr if math.isfinite(r.psnr) else 999.0})
              for r in rivals_at_size(pixels, max_bytes)]
    return Comparison(width=width, height=height, max_bytes=max_bytes, rivals=rivals)


@router.post("/compare", response_model=Comparison, summary="JPEG and WebP of an image at a given file size",
             description="The image must fit `GSIC_COMPARE_MAX_PIXELS` (413 `image_too_large`); one client may "
                         "have `GSIC_CLIENT_MAX_COMPARES` requests in flight (429 `client_limit`); the answer "
                         "comes within `GSIC_DECODE_TIMEOUT` or is 503 `compare_timeout`. Comparisons run in "
                         "`GSIC_COMPARE_CONCURRENCY` slots of their own, never in those of /decode.",
             responses=problems(413, 415, 422, 429, 503))
async def compare(
    settings: SettingsDep,
    slots: CompareSlotsDep,
    share: CompareShareDep,
    client: ClientDep,
    file: Annotated[UploadFile, File(description="The image, as for POST /encode.")],
    max_bytes: Annotated[int, Form(ge=1, le=1 << 30, description="The file size to match, e.g. a job's "
                                   "result.bytes.")],
) -> Comparison:
    with share.hold(client):
        data = await read_upload(file, settings.max_upload_bytes)
        max_pixels = min(settings.max_pixels, settings.compare_max_pixels)
        try:
            return await slots.run(_compare, data, max_pixels, max_bytes, timeout=settings.decode_timeout)
        except TimeoutError:
            raise Problem(503, "compare_timeout", f"the comparison did not finish within "
                          f"{settings.decode_timeout:g} s (GSIC_DECODE_TIMEOUT), waiting for a slot included; the "
                          "server is busy", headers={"Retry-After": "1"}) from None
