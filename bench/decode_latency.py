"""/decode latency of the HTTP service: p50 and p99 at concurrency 1 and 32.

Starts the server (a real uvicorn subprocess on a free loopback port), encodes one Kodak image through the
library (0.125 bpp by default), then POSTs that bitstream to /decode a bounded number of times per
concurrency level and writes the "decode-latency" section of BENCHMARKS.md.

    .venv/bin/python -m bench.decode_latency [--image PATH] [--bpp 0.125] [--requests 200] [--concurrency 1 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.paths import KODAK, REPO
from bench.report import machine_line, write_section

DEFAULT_IMAGE = KODAK / "kodim23.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: str, log_path: Path, timeout: float = 120.0,
                 **extra_env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GSIC_DATA_DIR": data_dir, "GSIC_LOG_LEVEL": "warning",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **extra_env}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not start:\n{log_path.read_text(errors='replace')[-3000:]}")


async def measure(url: str, data: bytes, requests: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (s) of ``requests`` POST /decode, ``concurrency`` in flight at a time; and the wall time."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                response = await client.post("/decode", content=data,
                                             headers={"content-type": "application/octet-stream"})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"/decode answered {response.status_code}: {response.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, wall


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--bpp", type=float, default=0.125)
    parser.add_argument("--iterations", type=int, default=None, help="encoder iterations (default: the codec's)")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    import codec

    print(f"encoding {args.image} at {args.bpp} bpp ...", flush=True)
    report = codec.encode_with_report(args.image, args.bpp, iterations=args.iterations)
    print(f"  {len(report.data)} bytes, {report.bpp:.4f} bpp, {report.psnr:.2f} dB, {report.seconds:.1f} s "
          f"on {report.device}", flush=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="gsic-bench-") as data_dir:
        proc, url = start_server(data_dir, Path(data_dir) / "server.log")
        try:
            asyncio.run(measure(url, report.data, min(10, args.requests), 1))  # warm-up
            for concurrency in args.concurrency:
                latencies, wall = asyncio.run(measure(url, report.data, args.requests, concurrency))
                rows.append((concurrency, len(latencies), percentile(latencies, 50) * 1e3,
                             percentile(latencies, 99) * 1e3, statistics.fmean(latencies) * 1e3,
                             len(latencies) / wall))
                print(f"  concurrency {concurrency}: p50 {rows[-1][2]:.1f} ms, p99 {rows[-1][3]:.1f} ms", flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    lines = [
        "## /decode latency (HTTP service)",
        "",
        f"{machine_line()}",
        "",
        f"`bench/decode_latency.py`: {args.image.name} ({report.width}x{report.height}) encoded once at "
        f"{args.bpp} bpp (achieved {report.bpp:.4f} bpp, {report.psnr:.2f} dB, {len(report.data)} bytes), then "
        f"POST /decode (bitstream in, PNG out) to a uvicorn server on loopback, decode device "
        f"`{os.environ.get('GSIC_DECODE_DEVICE', 'cpu')}`; latency is the client's, request to full response.",
        "",
        "| concurrency | requests | p50 (ms) | p99 (ms) | mean (ms) | throughput (req/s) |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {c} | {n} | {p50:.1f} | {p99:.1f} | {mean:.1f} | {rps:.1f} |" for c, n, p50, p99, mean, rps in rows),
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section("decode-latency", markdown)


if __name__ == "__main__":
    main()
