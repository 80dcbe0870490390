"""SHA-256 of fixed encodes, to show a refactoring changes no byte (run before and after, then diff).

    python -m bench.digests > before.txt   # ... change the code ...   python -m bench.digests | diff before.txt -

Three Kodak crops (128 x 96) x two rates x both methods, 400 iterations, seed 3, on the CPU.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

import codec
from bench.paths import KODAK

CROPS = {"kodim05": (200, 150, 328, 246), "kodim15": (300, 100, 428, 196), "kodim23": (400, 200, 528, 296)}


def main() -> int:
    for name, box in CROPS.items():
        pixels = np.asarray(Image.open(KODAK / f"{name}.png").convert("RGB").crop(box))
        for bpp in (0.125, 0.5):
            for method in ("default", "paper"):
                options = codec.EncodeOptions(bpp=bpp, method=method, iterations=400, seed=3, device="cpu")
                data = codec.encode(pixels, options=options)
                print(name, bpp, method, hashlib.sha256(data).hexdigest()[:16], len(data), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
