"""GET /healthz, GET /readyz, GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from service.deps import CompareSlotsDep, CpuSlotsDep, MetricsDep, QueueDep
from service.errors import PROBLEM_JSON, problems

router = APIRouter(tags=["health"])


class Alive(BaseModel):
    status: str = "ok"


class Worker(BaseModel):
    name: str
    device: str
    alive: bool
    busy: bool = Field(description="Whether it is encoding a job now (which job is not shown: /readyz is open).")


class Readiness(BaseModel):
    status: str = Field(description="ready, or not_ready (with 503) when no encode worker is running.")
    workers: list[Worker]
    devices: list[str]
    queue_depth: int


@router.get("/healthz", response_model=Alive, summary="Liveness: the process answers")
async def healthz() -> Alive:
    return Alive()


@router.get("/readyz", response_model=Readiness, summary="Readiness: an encode worker runs on a named device",
            responses=problems(503))
async def readyz(queue: QueueDep) -> Readiness | JSONResponse:
    workers = [Worker(name=w.name, device=w.device, alive=w.alive, busy=w.busy_with is not None)
               for w in await queue.workers()]
    stats = await queue.stats()
    devices = sorted({w.device for w in workers if w.alive})
    ready = bool(devices)
    body = Readiness(status="ready" if ready else "not_ready", workers=workers, devices=devices,
                     queue_depth=stats.depth)
    if ready:
        return body
    # The problem's own keys last: its "status" is the HTTP status (503), as problem+json says, not "not_ready".
    problem = {**body.model_dump(), "type": "urn:gsic:problem:not_ready", "title": "Service Unavailable",
               "status": 503, "code": "not_ready", "message": "no encode worker is running"}
    return JSONResponse(problem, status_code=503, media_type=PROBLEM_JSON)


@router.get("/metrics", response_class=Response, response_model=None, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
async def metrics(queue: QueueDep, metrics: MetricsDep, slots: CpuSlotsDep,
                  compare_slots: CompareSlotsDep) -> Response:
    stats = await queue.stats()
    metrics.cpu_slots_busy.set(slots.busy)
    metrics.compare_slots_busy.set(compare_slots.busy)
    metrics.set_job_counts(stats.by_state, stats.depth)
    metrics.set_workers(await queue.workers())
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
