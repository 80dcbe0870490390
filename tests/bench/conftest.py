"""Shared setup of the benchmark tests."""

import os

import pytest

from bench.baselines import CodecUnavailable, PillowCodec


@pytest.fixture
def require_codec():
    """Skips a test whose baseline codec has no plugin here, with the reason; in CI, which installs the
    test extra and so every plugin, the missing plugin fails the test instead."""

    def require(codec: PillowCodec) -> None:
        try:
            codec.require()
        except CodecUnavailable as exc:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(str(exc))

    return require
