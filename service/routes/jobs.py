"""GET /jobs/{id}, GET /jobs/{id}/result, DELETE /jobs/{id}."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from service.deps import ClientDep, QueueDep
from service.errors import Problem, problems
from service.jobs import Job, JobRecord, JobStatus, job_resource, visible_to
from service.queue.base import JobNotFound, JobQueue, ResultDamaged, ResultExpired, ResultNotReady

log = logging.getLogger("gsic.service")

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=64, description="The id POST /encode returned.")]

_RETRY_AFTER = {"Retry-After": {"description": "Present while the job is not finished: seconds before the "
                                "next poll.", "schema": {"type": "integer"}}}


def _not_found(job_id: str) -> Problem:
    return Problem(404, "job_not_found", f"no job {job_id!r}")


async def _job_of(queue: JobQueue, job_id: str, client: str) -> JobRecord:
    """The job, or 404 when there is none or another API key submitted it (the same answer: another key's job
    ids are not revealed)."""
    try:
        record = await queue.get(job_id)
    except JobNotFound:
        raise _not_found(job_id) from None
    if not visible_to(record, client):
        raise _not_found(job_id)
    return record


@router.get("/{job_id}", response_model=Job, summary="A job's state, progress and result",
            responses={200: {"headers": _RETRY_AFTER}, **problems(404)})
async def get_job(job_id: JobId, queue: QueueDep, client: ClientDep, response: Response) -> Job:
    record = await _job_of(queue, job_id, client)
    if not record.status.finished:
        response.headers["Retry-After"] = str(queue.retry_after(record))
    return job_resource(record)


@router.get(
    "/{job_id}/result",
    response_class=Response,
    response_model=None,
    summary="The encoded .gsi bitstream",
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "The bitstream, as an attachment named {id}.gsi"},
               **problems(404, 409, 410, 500)},
)
async def get_result(job_id: JobId, queue: QueueDep, client: ClientDep) -> Response:
    await _job_of(queue, job_id, client)
    try:
        record, data = await queue.result(job_id)
    except JobNotFound:
        raise _not_found(job_id) from None
    except ResultNotReady as exc:
        state = exc.record.status
        headers = {} if state.finished else {"Retry-After": str(queue.retry_after(exc.record))}
        message = (f"job {job_id} is {state.value}; the result exists once it succeeded" if not state.finished
                   else f"job {job_id} {state.value}: it has no result")
        raise Problem(409, "job_not_succeeded", message, headers=headers, job_status=state.value) from None
    except ResultExpired:
        raise Problem(410, "result_expired", f"the result of job {job_id} is past its retention period") from None
    except ResultDamaged as exc:
        log.error("%s", exc)
        raise Problem(500, "result_damaged", str(exc)) from None
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{record.id}.gsi"',
                             "X-Gsic-Psnr": f"{record.result_psnr:.4f}", "X-Gsic-Bpp": f"{record.result_bpp:.6f}"})


@router.delete(
    "/{job_id}",
    response_model=Job,
    summary="Cancel a job",
    description="A queued job is canceled at once (200). A running one is asked to stop and does so at its "
                "next progress report (202, cancel_requested true; poll for status canceled). A finished job "
                "is left as it is (200). Repeating the DELETE is harmless.",
    responses={202: {"model": Job, "description": "Cancellation requested; the encode stops shortly."},
               **problems(404)},
)
async def cancel_job(job_id: JobId, queue: QueueDep, client: ClientDep, response: Response) -> Job:
    await _job_of(queue, job_id, client)
    try:
        record = await queue.cancel(job_id)
    except JobNotFound:
        raise _not_found(job_id) from None
    if record.status is JobStatus.running:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Retry-After"] = "1"
    return job_resource(record)
