"""Running the service under uvicorn: ``serve(host, port)`` (what ``gsic serve`` calls)."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

import uvicorn
from PIL import Image

from service.app import create_app
from service.auth import ApiKeysInvalid
from service.queue.lock import DataDirInUse, DataDirLock
from service.queue.store import JobStore, StoreDamaged
from service.settings import Settings
from service.timeouts import with_timeouts


def serve(host: str = "127.0.0.1", port: int = 8000, *, settings: Settings | None = None) -> None:
    """Serve the app until interrupted (SIGINT/SIGTERM stop it cleanly; running encodes are requeued)."""
    settings = settings or Settings()
    try:  # bad keys, a busy data dir or a damaged store: a one-line error here, not a traceback from the startup
        app = create_app(settings)
        lock = DataDirLock(settings.data_dir).acquire()
        try:
            if settings.queue_url is None:
                JobStore.check(settings.data_dir)
        finally:
            lock.release()
    except (ApiKeysInvalid, DataDirInUse, StoreDamaged) as exc:
        print(f"gsic serve: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # codec.load_image already promotes this warning inside a catch_warnings block, which is not thread-safe;
    # this process serves uploads from several threads, so make it an error process-wide as well.
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    level = settings.log_level.lower()
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: only GSIC_TRUSTED_PROXIES are.
    config = uvicorn.Config(app, host=host, port=port, log_level=level, timeout_graceful_shutdown=30,
                            server_header=False,
                            http=with_timeouts(settings.request_read_timeout, settings.response_write_timeout),
                            proxy_headers=settings.trusted_proxies is not None,
                            forwarded_allow_ips=settings.trusted_proxies)
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description="Run the gsic encoder service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    serve(args.host, args.port)
