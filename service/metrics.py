"""Prometheus metrics, one CollectorRegistry per app so several apps can live in one process."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.jobs import JobStatus

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_ENCODE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


# The methods counted by name; a client may send any token as a method, and each would be a new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("gsic_http_requests", "HTTP requests by route template, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.request_seconds = Histogram("gsic_http_request_duration_seconds", "HTTP request latency.",
                                         ["route", "method"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.jobs = Gauge("gsic_jobs", "Jobs in the store by state.", ["state"], registry=self.registry)
        self.queue_depth = Gauge("gsic_queue_depth", "Jobs waiting for a worker.", registry=self.registry)
        self.workers = Gauge("gsic_workers", "Encode workers the queue knows of, by device and liveness "
                             "(with Redis: of every host, from their heartbeats).", ["device", "alive"],
                             registry=self.registry)
        self.jobs_finished = Counter("gsic_jobs_finished", "Jobs that reached a final state in this process.",
                                     ["state"], registry=self.registry)
        self.encode_seconds = Histogram("gsic_encode_duration_seconds", "Wall time of successful encodes.",
                                        buckets=_ENCODE_BUCKETS, registry=self.registry)
        self.cpu_slots_busy = Gauge("gsic_cpu_slots_busy", "Decode / upload-check slots taken "
                                    "(of GSIC_DECODE_CONCURRENCY), by abandoned decodes too until they end.",
                                    registry=self.registry)
        self.compare_slots_busy = Gauge("gsic_compare_slots_busy", "/compare slots taken (of "
                                        "GSIC_COMPARE_CONCURRENCY), by comparisons past their deadline too until "
                                        "they end.", registry=self.registry)
        self.decode_seconds = Histogram("gsic_decode_duration_seconds", "Wall time of /decode renders.",
                                        buckets=_LATENCY_BUCKETS, registry=self.registry)
        for state in JobStatus:
            self.jobs.labels(state.value)

    def set_job_counts(self, counts: dict[str, int], depth: int) -> None:
        for state in JobStatus:
            self.jobs.labels(state.value).set(counts.get(state.value, 0))
        self.queue_depth.set(depth)

    def set_workers(self, workers) -> None:
        """``workers``: the queue's WorkerInfo list; series of devices no longer listed are dropped."""
        self.workers.clear()
        for worker in workers:
            self.workers.labels(worker.device, "true" if worker.alive else "false").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by the route template it matched (``unmatched`` otherwise)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, templates: Callable[[], list[str]] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self._templates = templates
        self._compiled: list[tuple[object, str]] | None = None

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path:
            return path
        # Answered before routing (e.g. the body cap's early 413): find the template ourselves.
        if self._compiled is None:
            self._compiled = [(compile_path(t)[0], t) for t in (self._templates() if self._templates else [])]
        return next((t for regex, t in self._compiled if regex.match(scope.get("path", ""))), "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            template = self._template(scope)
            method = scope.get("method", "")
            method = method if method in _METHODS else "other"  # any token is a method: keep the labels few
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.request_seconds.labels(template, method).observe(time.perf_counter() - started)
