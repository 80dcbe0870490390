"""Peak memory of ``codec.load_image`` per upload pixel, as the service's upload check pays it.

Each case runs in a fresh process: the encoded file is made, the process's peak RSS (VmHWM) is reset through
/proc/self/clear_refs, ``load_image`` reads the bytes, and the peak above the RSS just before is divided by
the pixel count. Linux only. Prints one JSON line per case.

    .venv/bin/python -m bench.load_memory [--side 4096] [--case gray16 ...]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# name -> (Pillow mode, numpy dtype of the constant image, file format): the inputs a service upload can be.
CASES = {
    "gray16": ("I;16", np.uint16, "PNG"),
    "gray8": ("L", np.uint8, "PNG"),
    "rgb8": ("RGB", np.uint8, "PNG"),
    "float32": ("F", np.float32, "TIFF"),
    "int32": ("I", np.int32, "TIFF"),
}


def encoded(case: str, side: int) -> bytes:
    """A side x side picture of the case's mode, mid-grey: a small file (the issue's 32 KB upload)."""
    mode, dtype, fmt = CASES[case]
    shape = (side, side, 3) if mode == "RGB" else (side, side)
    fill = 0.5 if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).max // 2
    image = Image.fromarray(np.full(shape, fill, dtype))
    assert image.mode == mode, (image.mode, mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"compression": "tiff_adobe_deflate"} if fmt == "TIFF" else {}))
    return buffer.getvalue()


def _kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)[1])


def measure(case: str, side: int) -> dict:
    """In this process: the load's peak RSS above the RSS before it, per pixel."""
    import codec

    data = encoded(case, side)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _kib("VmRSS")
    pixels = codec.load_image(data, max_pixels=side * side)
    peak = _kib("VmHWM")
    assert pixels.shape == (side, side, 3)
    return {"case": case, "side": side, "file_bytes": len(data), "peak_mb": round((peak - before) / 1024, 1),
            "peak_bytes_per_pixel": round((peak - before) * 1024 / (side * side), 1)}


def measure_in_child(case: str, side: int) -> dict:
    """``measure`` in a fresh interpreter, so no earlier case's freed memory hides this one's peak."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", f"import json, bench.load_memory as m; "
                          f"print(json.dumps(m.measure({case!r}, {side})))"],
                         cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measuring {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    args = parser.parse_args(argv)
    for case in args.case or CASES:
        print(json.dumps(measure_in_child(case, args.side)), flush=True)


if __name__ == "__main__":
    main()
