"""schemathesis against the service's own OpenAPI schema: for every operation and generated input, no 5xx
and a response that matches the schema (documented status, conforming body). A short run by default, a
long one marked slow."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from service.app import create_app
from service.settings import Settings

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def operations(tmp_path_factory):
    # No encode worker: accepted jobs stay queued, so generated uploads cost no CPU.
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("schema") / "data", workers=0, device="cpu",
                              queue_size=10_000))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # its ASGI client runs the app's lifespan
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operations, examples: int, derandomize: bool) -> None:
    assert len(operations) >= 8  # every route of the service is in the schema
    for operation in operations:
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=derandomize, database=None)
        @given(operation.as_strategy())
        def run(case):
            # /readyz answers its documented 503 here (no encode worker, by design); its body is still checked.
            excluded = [not_a_server_error] if operation.path == "/readyz" else []
            case.call_and_validate(checks=CHECKS, excluded_checks=excluded)

        run()


def test_every_route_matches_its_schema(operations):
    _fuzz(operations, 15, derandomize=True)


@pytest.mark.slow
def test_every_route_matches_its_schema_long_run(operations):
    _fuzz(operations, 300, derandomize=False)
