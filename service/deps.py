"""FastAPI dependencies: the app-wide objects, as ``Annotated`` types for route signatures."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request

from service.metrics import Metrics
from service.queue.base import JobQueue
from service.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def _cpu_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.cpu_limiter


SettingsDep = Annotated[Settings, Depends(_settings)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
CpuLimiterDep = Annotated[anyio.CapacityLimiter, Depends(_cpu_limiter)]
