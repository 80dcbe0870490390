"""Job queue throughput and latency: the embedded queue against Redis with 1 and 2 `gsic worker` processes.

For each setup a real uvicorn server (and, for Redis, a redis-server on a free loopback port and the worker
processes) is started; after one warm-up job, ``--clients`` concurrent clients submit ``--jobs`` small encodes
between them (a ``--size`` crop of ``--image``, ``--iterations`` fixed, a distinct seed each) and poll each
job every ``--poll`` seconds until it ends. It reports jobs per minute (first submit to last finish), the
p50/p99 latency of POST /encode and of GET /jobs/{id} as the clients saw them, and for Redis the commands
the server processed per job and the bytes stored per job (upload + result), and writes the
"queue-throughput" section of BENCHMARKS.md.

    .venv/bin/python -m bench.queue_throughput [--jobs 64] [--clients 32] [--iterations 100] [--size 128]
        [--setups embedded redis-1 redis-2] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.decode_latency import DEFAULT_IMAGE, free_port, percentile, start_server
from bench.paths import REPO
from bench.report import machine_line, write_section

FINISHED = ("succeeded", "failed", "canceled")


@dataclass
class Run:
    setup: str
    jobs: int = 0
    seconds: float = 0.0
    submit: list[float] = field(default_factory=list)
    poll: list[float] = field(default_factory=list)
    failed: int = 0
    redis_commands: int | None = None
    blob_bytes: int | None = None

    @property
    def per_minute(self) -> float:
        return 60 * self.jobs / self.seconds if self.seconds else 0.0


def crop_png(path: Path, size: int) -> bytes:
    from PIL import Image

    image = Image.open(path).convert("RGB")
    left, top = (image.width - size) // 2, (image.height - size) // 2
    buffer = io.BytesIO()
    image.crop((left, top, left + size, top + size)).save(buffer, "PNG")
    return buffer.getvalue()


async def load(url: str, png: bytes, jobs: int, clients: int, iterations: int, poll: float, seed0: int,
               run: Run) -> None:
    """``jobs`` encodes spread over ``clients`` concurrent clients; fills ``run`` with what they saw."""
    pending = list(range(seed0, seed0 + jobs))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:

        async def client() -> None:
            while pending:
                seed = pending.pop()
                started = time.perf_counter()
                response = await http.post("/encode", files={"file": ("crop.png", png, "image/png")},
                                           data={"preset": "high", "iterations": str(iterations), "seed": str(seed)})
                run.submit.append(time.perf_counter() - started)
                if response.status_code != 202:
                    raise RuntimeError(f"POST /encode answered {response.status_code}: {response.text[:300]}")
                job_id = response.json()["id"]
                while True:
                    await asyncio.sleep(poll)
                    started = time.perf_counter()
                    job = (await http.get(f"/jobs/{job_id}")).json()
                    run.poll.append(time.perf_counter() - started)
                    if job["status"] in FINISHED:
                        run.failed += job["status"] != "succeeded"
                        break

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        run.seconds = time.perf_counter() - started
        run.jobs = jobs


@contextlib.contextmanager
def redis_server(workdir: Path):
    import redis

    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not on PATH (apt-get install redis-server), or pick --setups embedded")
    port = free_port()
    with (workdir / "redis.log").open("wb") as log:
        proc = subprocess.Popen([executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(workdir)], stdout=log, stderr=log)
    client = redis.Redis(port=port)
    try:
        for _ in range(200):
            with contextlib.suppress(redis.exceptions.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        yield client, f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


def start_workers(count: int, env: dict[str, str], workdir: Path) -> list[subprocess.Popen]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    full = {**os.environ, **env, "PYTHONPATH": path}
    procs = []
    for i in range(count):
        with (workdir / f"worker{i}.log").open("wb") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--name", f"bench-{i}"],
                                          cwd=REPO, env=full, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_ready(url: str, workers: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            ready = httpx.get(url + "/readyz", timeout=5).json()
            if sum(w["alive"] for w in ready.get("workers", [])) >= workers:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{workers} workers were not ready after {timeout} s")


def stop(procs) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(setup: str, args, png: bytes) -> Run:
    run = Run(setup)
    queue_size = str(max(64, args.jobs + args.clients))
    with tempfile.TemporaryDirectory(prefix="gsic-bench-queue-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        env = {"GSIC_QUEUE_SIZE": queue_size}
        workers = 1
        redis_client = None
        if setup.startswith("redis-"):
            workers = int(setup.split("-", 1)[1])
            redis_client, url = stack.enter_context(redis_server(workdir))
            env.update(GSIC_QUEUE_URL=url, GSIC_LOG_LEVEL="warning")
            procs = start_workers(workers, env, workdir)
            stack.callback(stop, procs)
        else:
            env["GSIC_WORKERS"] = "1"
        proc, url = start_server(str(workdir / "data"), workdir / "server.log", **env)
        stack.callback(stop, [proc])
        wait_ready(url, workers)
        asyncio.run(load(url, png, workers, workers, args.iterations, args.poll, 10**6, Run(setup)))  # warm-up
        if redis_client is not None:
            commands = redis_client.info("stats")["total_commands_processed"]
        asyncio.run(load(url, png, args.jobs, args.clients, args.iterations, args.poll, 0, run))
        if redis_client is not None:
            # Includes the clients' polls and the idle workers' queue polls: an upper bound of the per-job cost.
            run.redis_commands = (redis_client.info("stats")["total_commands_processed"] - commands) // args.jobs
            results = sum(redis_client.strlen(k) for k in redis_client.scan_iter("gsic:result:*"))
            run.blob_bytes = len(png) + results // max(1, args.jobs + workers)
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--size", type=int, default=128, help="side of the centre crop encoded by every job")
    parser.add_argument("--iterations", type=int, default=100, help="encoder iterations of every job")
    parser.add_argument("--jobs", type=int, default=64, help="jobs per setup")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between a client's polls")
    parser.add_argument("--setups", nargs="+", default=["embedded", "redis-1", "redis-2"],
                        help="embedded, or redis-N for N gsic worker processes")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    png = crop_png(args.image, args.size)
    runs = []
    for setup in args.setups:
        print(f"{setup}: {args.jobs} jobs, {args.clients} clients ...", flush=True)
        runs.append(measure(setup, args, png))
        r = runs[-1]
        print(f"  {r.per_minute:.1f} jobs/min, submit p50 {percentile(r.submit, 50) * 1e3:.1f} ms, "
              f"poll p50 {percentile(r.poll, 50) * 1e3:.1f} ms, {r.failed} failed", flush=True)

    def cell(value, unit: str = "") -> str:
        return "–" if value is None else f"{value}{unit}"

    lines = [
        "## Job queue throughput (embedded vs Redis + gsic worker)",
        "",
        f"{machine_line()}",
        "",
        f"`bench/queue_throughput.py`: {args.jobs} jobs per setup, each a {args.size}x{args.size} centre crop of "
        f"{args.image.name} at preset high, {args.iterations} iterations, submitted and polled (every "
        f"{args.poll} s) by {args.clients} concurrent clients against one API process on loopback. Redis "
        "commands per job count every command the server processed during the run (polls included) over the "
        "jobs; bytes per job are the upload plus the result stored in Redis.",
        "",
        "| setup | jobs/min | submit p50 (ms) | submit p99 (ms) | poll p50 (ms) | poll p99 (ms) | failed "
        "| Redis commands/job | bytes/job |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {r.setup} | {r.per_minute:.1f} | {percentile(r.submit, 50) * 1e3:.1f} | "
          f"{percentile(r.submit, 99) * 1e3:.1f} | {percentile(r.poll, 50) * 1e3:.1f} | "
          f"{percentile(r.poll, 99) * 1e3:.1f} | {r.failed} | {cell(r.redis_commands)} | {cell(r.blob_bytes)} |"
          for r in runs),
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section("queue-throughput", markdown)


if __name__ == "__main__":
    main()
