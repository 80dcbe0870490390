"""POST /encode: upload an image, get an encode job back (202)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Response, UploadFile, status

import codec
from service.deps import ClientDep, CpuSlotsDep, QueueDep, SettingsDep
from service.errors import Problem, problems
from service.jobs import Job, Submission, idempotency_scope, job_resource
from service.limits import check_encode_work
from service.queue.base import ClientLimit, IdempotencyConflict, QueueFull
from service.uploads import check_image, fingerprint, read_upload

router = APIRouter(tags=["encode"])

MIN_BPP, MAX_BPP = codec.MIN_BPP, codec.MAX_BPP


@router.post(
    "/encode",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Job,
    summary="Queue an encode job",
    responses={
        202: {"description": "Queued (or the existing job of a replayed Idempotency-Key). Poll the Location.",
              "headers": {"Location": {"description": "/jobs/{id}", "schema": {"type": "string"}},
                          "Retry-After": {"description": "Seconds before the first poll",
                                          "schema": {"type": "integer"}}}},
        **problems(413, 415, 422, 429),
    },
)
async def submit_encode(
    response: Response,
    queue: QueueDep,
    settings: SettingsDep,
    slots: CpuSlotsDep,
    client: ClientDep,
    file: Annotated[UploadFile, File(description="The image: PNG, JPEG, GIF (first frame), WebP, BMP, TIFF, "
                                                 "PPM/PGM or AVIF, sniffed from its bytes.")],
    bpp: Annotated[float | None, Form(ge=MIN_BPP, le=MAX_BPP, allow_inf_nan=False,
                                      description="Target bits per pixel (or give a preset).")] = None,
    preset: Annotated[str | None, Form(max_length=64, description="A rate preset instead of a bpp: "
                                       + ", ".join(f"{k} ({v} bpp)" for k, v in codec.RATE_PRESETS.items())
                                       + f". Neither: {codec.DEFAULT_PRESET}.")] = None,
    iterations: Annotated[int | None, Form(ge=1, description="Optimisation iterations (default: the "
                                           "codec's); at most GSIC_MAX_ITERATIONS.")] = None,
    seed: Annotated[int, Form(ge=0, le=2**31 - 1, description="Random seed of the encoder.")] = 0,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255,
                                                  description="Same key + same upload: the same job.")] = None,
) -> Job:
    try:
        params = codec.EncodeOptions(bpp=bpp, preset=preset, iterations=iterations, seed=seed)
    except ValueError as exc:
        code = "unknown_preset" if preset is not None and preset not in codec.RATE_PRESETS else "invalid_parameters"
        raise Problem(422, code, str(exc)) from None
    if bpp is None and preset is None:  # stored and shown as the preset it ran at
        params = params.replace(preset=codec.DEFAULT_PRESET)
    if iterations is not None and iterations > settings.max_iterations:
        raise Problem(422, "invalid_parameters", f"iterations must be at most {settings.max_iterations}")

    # A cheap early answer; the queue checks again atomically when it inserts, after looking up the
    # Idempotency-Key, so a replay of a queued job gets its job even while the queue is full.
    stats = await queue.stats()
    if idempotency_key is None and stats.depth >= settings.queue_size:
        retry = str(queue.retry_after())
        raise Problem(429, "queue_full", f"the queue is full ({stats.depth} jobs waiting)",
                      headers={"Retry-After": retry})
    data = await read_upload(file, settings.max_upload_bytes)
    image_format, width, height = await slots.run(check_image, data, settings.max_pixels)
    check_encode_work(width, height, params, settings.max_encode_work)
    submission = Submission(image=data, image_format=image_format, width=width, height=height, params=params,
                            fingerprint=fingerprint(data, params),
                            idempotency_key=idempotency_scope(client, idempotency_key), client=client)
    try:
        outcome = await queue.submit(submission)
    except QueueFull as exc:
        raise Problem(429, "queue_full", str(exc), headers={"Retry-After": str(queue.retry_after())}) from None
    except ClientLimit as exc:
        raise Problem(429, "client_limit", str(exc), headers={"Retry-After": str(queue.retry_after())},
                      limit="GSIC_CLIENT_MAX_QUEUED") from None
    except IdempotencyConflict as exc:
        raise Problem(422, "idempotency_key_reused", str(exc)) from None
    record = outcome.record
    response.headers["Location"] = f"/jobs/{record.id}"
    if not record.status.finished:
        response.headers["Retry-After"] = str(queue.retry_after(record))
    return job_resource(record)
