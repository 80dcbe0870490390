"""A cold ``gsic decode``: the wall time of fresh processes decoding one Kodak file to PNG, and what their
imports cost.

    .venv/bin/python -m bench.cold_decode [--image PATH] [--bpp 0.125] [--iterations N] [--gsi FILE] [--runs 10]

Encodes the image once on the CPU (``--gsi FILE`` keeps the file: an existing one is decoded as it is; the
decode's cost grows with the Gaussian count, which the report states), then runs ``--runs`` fresh
``python -m cli.main decode FILE out.png`` processes of this checkout, after one untimed run that fills numba's
cache, and reports their median wall time, the decode's own share (the CLI's "in X s": the first call of the
compiled renderer and the PNG write included) and, from one ``python -X importtime`` run, the packages and
modules whose import costs most. The load average is printed beside: timings on a busy machine are not idle
ones.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.paths import KODAK

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = KODAK / "kodim23.png"
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--bpp", type=float, default=0.125)
    parser.add_argument("--iterations", type=int, help="encoder steps (default: the method's own)")
    parser.add_argument("--gsi", type=Path, help="the encoded file: reused when it exists, else written")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=8, help="import costs listed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        gsi = args.gsi or Path(tmp) / "cold.gsi"
        if not gsi.exists():
            _encode(args.image, args.bpp, args.iterations, gsi)
        out = Path(tmp) / "out.png"
        command = [sys.executable, "-m", "cli.main", "decode", str(gsi), str(out)]
        n_gaussians = _n_gaussians(gsi)
        print(f"{gsi.name}: {gsi.stat().st_size} bytes, {n_gaussians} Gaussians; load average before "
              f"{_load()}", flush=True)
        _run(command)  # fills numba's cache if this checkout's is cold
        walls, decodes = zip(*(_run(command) for _ in range(args.runs)))
        print(f"cold gsic decode, {args.runs} runs: median {statistics.median(walls):.3f} s wall (min "
              f"{min(walls):.3f}, max {max(walls):.3f}); decode + PNG write inside it median "
              f"{statistics.median(decodes):.3f} s; load average after {_load()}")
        importtime = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], cwd=REPO,
                                    capture_output=True, text=True, check=True).stderr
    _print_import_costs(importtime, args.top)
    return 0


def _encode(image: Path, bpp: float, iterations: int | None, gsi: Path) -> None:
    command = [sys.executable, "-m", "cli.main", "encode", str(image), str(gsi), "--bpp", str(bpp),
               "--device", "cpu", "--quiet"]
    if iterations is not None:
        command += ["--iterations", str(iterations)]
    subprocess.run(command, cwd=REPO, check=True)


def _n_gaussians(gsi: Path) -> int:
    info = subprocess.run([sys.executable, "-m", "cli.main", "info", str(gsi)], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout
    return int(re.search(r'"n_gaussians": (\d+)', info).group(1))


def _run(command: list[str]) -> tuple[float, float]:  # (wall seconds, the CLI's own decode seconds)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    return wall, float(re.search(r" in ([0-9.]+) s", done.stdout).group(1))


def _print_import_costs(importtime: str, top: int) -> None:
    rows = [(int(own), int(total), len(indent), name) for own, total, indent, name in _IMPORT_LINE.findall(importtime)]
    roots = [(total, name) for _, total, indent, name in rows if indent == 0]  # imported by the program itself
    packages: dict[str, int] = {}
    for _, total, _, name in rows:  # a package's cost: its own top module's cumulative time
        if "." not in name:
            packages[name] = max(packages.get(name, 0), total)
    print(f"imports: {sum(total for total, _ in roots) / 1e3:.0f} ms in all (python -X importtime, one run)")
    print("  packages by cumulative ms: " + ", ".join(
        f"{name} {total / 1e3:.0f}" for name, total in sorted(packages.items(), key=lambda kv: -kv[1])[:top]))
    print("  modules by own ms: " + ", ".join(
        f"{name} {own / 1e3:.0f}" for own, _, _, name in sorted(rows, key=lambda r: -r[0])[:top]))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
