"""Shared test setup. TRITON_INTERPRET must be set before any @triton.jit decoration runs."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # two OpenMP threads can stall under load

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from bench.paths import KODAK  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    if not KODAK.is_dir():
        pytest.skip(f"Kodak images not found at {KODAK}")
    return KODAK
