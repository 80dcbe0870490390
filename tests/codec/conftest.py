from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session")
def crop() -> np.ndarray:  # [64, 96, 3] uint8, a detailed Kodak crop
    return np.asarray(Image.open(FIXTURES / "kodim23_crop96x64.png").convert("RGB"))


@pytest.fixture(scope="session")
def encoded(crop) -> codec.EncodeReport:
    """One real encode shared by the tests that only need a valid bitstream."""
    # 200 steps: per-Gaussian colours (the default since format v2) need about a hundred to settle.
    return codec.encode_with_report(crop, 1.0, iterations=200, seed=0)


@pytest.fixture(scope="session")
def kodim_crop() -> np.ndarray:  # [256, 256, 3] uint8: the smallest picture the texture layer codes
    return np.asarray(Image.open(FIXTURES / "kodim04_crop256.png").convert("RGB"))
