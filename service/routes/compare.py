"""POST /compare: what JPEG and WebP give for an image at a given file size (the web page's comparison)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field

import codec
from service.compare import MAX_SIDE, rivals_at_size
from service.deps import CpuSlotsDep, SettingsDep
from service.errors import Problem, problems
from service.uploads import check_image, read_upload

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
    check_image(data, max_pixels)  # the same checks, and the same problem answers, as an encode upload
    pixels = codec.load_image(data, max_pixels=max_pixels)
    height, width = pixels.shape[:2]
    if max(width, height) > MAX_SIDE:
        raise Problem(413, "image_too_large", f"the image is {width}x{height}; /compare measures sides of at most "
                      f"{MAX_SIDE} pixels, WebP's limit")
    # JSON has no infinity: a lossless rival (a flat image) is reported as 999 dB, as jobs do.
    rivals = [Rival(**{**vars(r), "psnr": r.psnr if math.isfinite(r.psnr) else 999.0})
              for r in rivals_at_size(pixels, max_bytes)]
    return Comparison(width=width, height=height, max_bytes=max_bytes, rivals=rivals)


@router.post("/compare", response_model=Comparison, summary="JPEG and WebP of an image at a given file size",
             responses=problems(413, 415, 422))
async def compare(
    settings: SettingsDep,
    slots: CpuSlotsDep,
    file: Annotated[UploadFile, File(description="The image, as for POST /encode.")],
    max_bytes: Annotated[int, Form(ge=1, le=1 << 30, description="The file size to match, e.g. a job's "
                                   "result.bytes.")],
) -> Comparison:
    data = await read_upload(file, settings.max_upload_bytes)
    return await slots.run(_compare, data, settings.max_pixels, max_bytes)
