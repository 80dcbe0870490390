"""The crafted worst cases (tests/codec/hostile.py) decode or are refused within the decode bounds:
at most 0.5 s of CPU and 200 MB of memory each, under the service's default decode limits."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

import codec
from codec.format.bitstream import read_bitstream
from service.settings import Settings
from tests.codec.hostile import DIR

MAX_CPU_SECONDS = 0.5
MAX_BYTES = 200_000_000
SIDE = 2048  # the largest square output at the default GSIC_DECODE_MAX_PIXELS

# file: what a decode under the default limits gives: an image's shape, or (error type, field).
EXPECTED = {
    "claims_max_n.gsi": (codec.BitstreamError, "payload_length"),
    "max_n.gsi": (codec.DecodeLimitError, "evaluations"),
    "max_n_truncated.gsi": (codec.BitstreamError, "payload_length"),
    "max_n_trailing.gsi": (codec.DecodeLimitError, "evaluations"),
    "empty_max_size.gsi": (codec.DecodeLimitError, "size"),
    "empty_server_size.gsi": (SIDE, SIDE, 3),
    "max_evaluations.gsi": (SIDE, SIDE, 3),
    "over_evaluations.gsi": (codec.DecodeLimitError, "evaluations"),
    "max_tiny_gaussians.gsi": (SIDE, SIDE, 3),
    "max_side_info.gsi": (SIDE, SIDE, 3),
    "max_side_info_v2.gsi": (SIDE, SIDE, 3),
    "texture_server_size.gsi": (codec.DecodeLimitError, "evaluations"),
    "texture_at_budget.gsi": None,  # its own size: the largest square the budget admits (tests/codec/hostile.py)
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status(key: str) -> int:  # bytes, from /proc/self/status
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(key))


def _server_decode(data: bytes):
    settings = Settings()
    try:
        return codec.decode(data, max_pixels=min(settings.max_pixels, settings.decode_max_pixels),
                            max_evaluations=settings.decode_max_evaluations)
    except codec.CodecError as exc:
        return exc


@pytest.fixture(scope="module", autouse=True)
def _warm():
    codec.decode((DIR / "empty_server_size.gsi").read_bytes(), width=8, height=8)  # numba compiled or cached


def test_every_crafted_file_is_listed():
    assert sorted(p.name for p in DIR.glob("*.gsi")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_crafted_file_is_decoded_or_refused_within_the_bounds(name):
    data = (DIR / name).read_bytes()
    cpu = []
    for _ in range(3):  # the least of three: other processes only ever add to a measurement
        started = _cpu_seconds()
        result = _server_decode(data)
        cpu.append(_cpu_seconds() - started)
    with open("/proc/self/clear_refs", "w") as clear:  # resets the peak resident size (VmHWM)
        clear.write("5")
    before = _status("VmRSS:")
    _server_decode(data)
    peak = _status("VmHWM:") - before
    expected = EXPECTED[name] or (codec.inspect(data).height, codec.inspect(data).width, 3)
    if isinstance(expected[0], type):
        assert isinstance(result, expected[0]) and result.field == expected[1], result
    else:
        assert isinstance(result, np.ndarray) and result.shape == expected, result
    assert min(cpu) <= MAX_CPU_SECONDS, f"{name}: {min(cpu):.3f} s of CPU"
    assert peak <= MAX_BYTES, f"{name}: {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("name, field", [
    ("claims_max_n.gsi", "payload_length"),  # 2^20 Gaussians claimed, no payload
    ("max_n_truncated.gsi", "payload_length"),  # a quarter of the payload gone
    ("max_n_trailing.gsi", "payload"),  # 64 words after the last symbol
])
def test_the_payload_must_carry_exactly_its_gaussians(name, field):
    """Without any decode limit, the bytes themselves refuse a claim they cannot back, quickly."""
    started = time.perf_counter()
    with pytest.raises(codec.BitstreamError) as info:
        read_bitstream((DIR / name).read_bytes())
    assert info.value.field == field
    assert time.perf_counter() - started < 5  # decoding 2^20 x 4 symbols at most, not rendering them


def test_the_full_max_n_file_is_valid():
    q = read_bitstream((DIR / "max_n.gsi").read_bytes())
    assert len(q) == 1 << 20
