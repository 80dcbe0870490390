"""Fixtures of the service tests: apps on a temporary data dir, a real Redis, tiny images, a small bitstream."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("service") is None:  # an editable install made before service/ existed
    sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from svc_helpers import image_bytes, running_redis  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings)``: a started app (lifespan run) on ``tmp_path/data`` unless data_dir is given."""
    with contextlib.ExitStack() as stack:

        def make(**overrides) -> TestClient:
            overrides.setdefault("data_dir", tmp_path / "data")
            overrides.setdefault("device", "cpu")
            app = create_app(Settings(**overrides))
            return stack.enter_context(TestClient(app, raise_server_exceptions=True))

        yield make


@pytest.fixture
def client(make_client) -> TestClient:
    """An app with one CPU worker."""
    return make_client(workers=1)


@pytest.fixture
def idle_client(make_client) -> TestClient:
    """An app with no worker: accepted jobs stay queued (no CPU spent on encodes)."""
    return make_client(workers=0)


@pytest.fixture(scope="session")
def small_png() -> bytes:
    return image_bytes(32, 24)


@pytest.fixture(scope="session")
def kodak_crop() -> bytes:
    return (FIXTURES / "kodim23_crop96x64.png").read_bytes()


@pytest.fixture(scope="session")
def bitstream() -> bytes:
    """A valid .gsi bitstream of the 64x48 fixture crop (10 iterations: fast, low quality)."""
    import codec

    return codec.encode((FIXTURES / "kodim05_crop64x48.png").read_bytes(), preset="high", iterations=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a free loopback port for the session (no persistence); its URL without a db.
    Skipped where redis-server is not installed, except in CI (CI=true), where .ci/run installs it."""
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server) -> str:
    """Database 0 of the session's Redis, emptied for this test (the scale-out tests use other databases)."""
    import redis

    url = redis_server + "/0"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url
