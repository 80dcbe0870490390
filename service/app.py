"""The FastAPI application: ``create_app(settings)``; uvicorn serves it (see ``service.server``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount, Route

from service.auth import ApiKeyMiddleware, key_digests, key_file_digests
from service.browser_guard import HostCheckMiddleware, OriginCheckMiddleware, split_list
from service.errors import install_error_handlers, problem_response
from service.limits import BodyLimitMiddleware, ClientShare, CpuSlots
from service.metrics import Metrics, MetricsMiddleware
from service.queue.base import JobQueue, QueueUnavailable
from service.routes import compare, decode, docs, encode, health, jobs, page
from service.settings import Settings

log = logging.getLogger("gsic.service")

DESCRIPTION = """\
Encode images to .gsi bitstreams (2D Gaussian splatting) as asynchronous jobs, and decode bitstreams
to PNG synchronously.

Flow: `POST /encode` (multipart `file`) -> 202 + `Location: /jobs/{id}` -> poll `GET /jobs/{id}` until
`status` is `succeeded` -> `GET /jobs/{id}/result` (the bitstream) -> `POST /decode` (PNG).

Every error is `application/problem+json` with a stable `code` and a human `message`.
"""


def route_templates(app: FastAPI) -> list[str]:
    """Path templates for the metrics' route label of answers given before routing (the body cap's 413):
    the schema's paths, and the app's own routes and mounts (/openapi.json, /static, /docs/assets)."""
    own = [f"{route.path}/{{path:path}}" if isinstance(route, Mount) else route.path
           for route in app.routes if isinstance(route, (Route, Mount))]
    return list(app.openapi()["paths"]) + own


async def _queue_unavailable(_: Request, exc: QueueUnavailable) -> JSONResponse:
    return problem_response(503, "queue_unavailable", str(exc), headers={"Retry-After": str(exc.retry_after)})


def create_app(settings: Settings | None = None, *, queue: JobQueue | None = None) -> FastAPI:
    """Build the app. ``settings`` defaults to the ``GSIC_*`` environment; ``queue`` to the Redis one when
    ``settings.queue_url`` is set, else the embedded one."""
    settings = settings or Settings()
    # Raises ApiKeysInvalid (gsic serve: one line, exit 2) before anything else is opened.
    digests = key_digests(settings.api_keys or "")
    if settings.api_keys_file is not None:
        digests += key_file_digests(settings.api_keys_file)
    metrics = Metrics()
    if queue is None and settings.queue_url:
        from service.queue.distributed import RedisQueue

        queue = RedisQueue(settings, metrics)
    elif queue is None:
        from service.queue.embedded import EmbeddedQueue

        queue = EmbeddedQueue(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await queue.start()
        try:
            async with anyio.create_task_group() as tasks:  # on the way out it waits for abandoned decodes
                app.state.cpu_slots = CpuSlots(settings.decode_concurrency, tasks)
                app.state.compare_slots = CpuSlots(settings.compare_concurrency, tasks)
                await app.state.cpu_slots.run(decode.warm_up, settings.decode_device)
                log.info("gsic service ready: %s queue, encode workers %s", type(queue).__name__,
                         [w.device for w in await queue.workers()])
                yield
        finally:
            await queue.stop()

    app = FastAPI(title="gsic encoder service", version="1", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # /docs comes from service.routes.docs, with local assets
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.queue = queue
    app.state.compare_share = ClientShare(settings.client_max_compares, "GSIC_CLIENT_MAX_COMPARES")
    install_error_handlers(app)
    app.add_exception_handler(QueueUnavailable, _queue_unavailable)
    for module in (encode, jobs, decode, compare, health, page, docs):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(packages=[("service", "static")]), name="static")
    app.mount(docs.ASSETS, StaticFiles(packages=[docs.ASSETS_PACKAGE]), name="docs-assets")
    # Outermost last: the metrics see every answer, the 413s of the body cap included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if digests:  # before the body is read: a caller without a key uploads nothing
        app.add_middleware(ApiKeyMiddleware, digests=digests)
    # Before the key check: a rebinding or cross-site page is told so whether or not it has a key.
    app.add_middleware(OriginCheckMiddleware, allowed_origins=split_list(settings.allowed_origins))
    app.add_middleware(HostCheckMiddleware, allowed_hosts=split_list(settings.allowed_hosts))
    app.add_middleware(MetricsMiddleware, metrics=metrics, templates=lambda: route_templates(app))
    return app
