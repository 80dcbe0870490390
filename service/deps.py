"""FastAPI dependencies: the app-wide objects, as ``Annotated`` types for route signatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.auth import CLIENT_KEY
from service.jobs import KEY_CLIENT
from service.limits import ClientShare, CpuSlots
from service.metrics import Metrics
from service.queue.base import JobQueue
from service.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _cpu_slots(request: Request) -> CpuSlots:
    return request.app.state.cpu_slots


def _compare_slots(request: Request) -> CpuSlots:
    return request.app.state.compare_slots


def _compare_share(request: Request) -> ClientShare:
    return request.app.state.compare_share


def _client(request: Request) -> str:
    """Who the per-client job limits count: the API key's digest when keys are on, else the remote address."""
    key = getattr(request.state, CLIENT_KEY, None)
    if key is not None:
        return f"{KEY_CLIENT}{key}"
    return f"addr:{request.client.host if request.client else 'unknown'}"


SettingsDep = Annotated[Settings, Depends(_settings)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
CpuSlotsDep = Annotated[CpuSlots, Depends(_cpu_slots)]
CompareSlotsDep = Annotated[CpuSlots, Depends(_compare_slots)]
CompareShareDep = Annotated[ClientShare, Depends(_compare_share)]
ClientDep = Annotated[str, Depends(_client)]
