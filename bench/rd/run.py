"""Running the tasks: in this process for one job, else in spawned worker processes with a share of the cores.

This is the one place that calls the codec's encoder (``_run_ours``); ``ours_setting`` says in the report
how it was called, so the two change together.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from bench import metrics
from bench.baselines import CODECS, load_rgb, sweep
from bench.rd.plan import OursTask, SweepTask
from bench.rd.store import append_rows

_THREADS: int | None = None
_WARM: set = set()


def ours_setting(method: str, iterations: int | None, seed: int, device: str | None) -> str:
    """The report's line for how ``_run_ours`` calls the encoder."""
    return (f"ours: `codec.encode_with_report(image, options=EncodeOptions(bpp=rate, method={method!r}, "
            f"iterations={iterations}, seed={seed}, device={device!r}))`")


def _init_worker(threads: int) -> None:
    """Limit a process's threads to its share of the cores (cores // jobs)."""
    global _THREADS
    _THREADS = threads
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(threads)


def run_task(task: OursTask | SweepTask) -> list[dict]:
    """Rows for ``task``; on failure one row with an "error" (not stored, so a rerun retries it)."""
    try:
        if isinstance(task, OursTask):
            return [_run_ours(task)]
        return _run_sweep(task)
    except Exception as exc:  # noqa: BLE001 - one failed encode must not end a run of hours
        return [{"error": f"{type(exc).__name__}: {exc}", "task": task.describe(),
                 "traceback": traceback.format_exc(limit=8)}]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _warm_up(device: str | None) -> None:
    """One tiny encode per process and device, so that lazy imports and JIT compilation (numba, Triton) are
    not charged to the first image's encode time."""
    if device in _WARM:
        return
    _WARM.add(device)
    import codec

    rng = np.random.default_rng(0)
    try:
        codec.decode(codec.encode(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), 1.0, iterations=2,
                                  device=device), device=device)
    except Exception:  # noqa: BLE001 - only a warm-up; the real encode reports any real problem
        pass


def _run_ours(task: OursTask) -> dict:
    import codec

    _warm_up(task.device)
    image = load_rgb(task.path)
    height, width = image.shape[:2]
    started = time.perf_counter()
    options = codec.EncodeOptions(bpp=task.rate, method=task.method, iterations=task.iterations, seed=task.seed,
                                  device=task.device)
    report = codec.encode_with_report(image, options=options)
    encode_s = time.perf_counter() - started
    data = report.data
    if task.save_dir:
        out = Path(task.save_dir) / f"{task.image}-{task.method}-{task.rate:g}.gsi"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        data = out.read_bytes()
    decoded = codec.decode(data, device=task.device)  # also warms the decoder up
    started = time.perf_counter()
    again = codec.decode(data, device=task.device)
    decode_s = time.perf_counter() - started
    return {
        "codec": "ours", "image": task.image, "width": width, "height": height, "method": task.method,
        "iterations": task.iterations, "seed": task.seed, "target_bpp": task.rate, "bytes": len(data),
        "bpp": metrics.bpp(len(data), width, height), "psnr": codec.psnr(image, decoded),
        "ms_ssim": metrics.ms_ssim(image, decoded), "encode_s": encode_s, "decode_s": decode_s,
        "n_gaussians": report.n_gaussians, "device": report.device, "report_psnr": report.psnr,
        "deterministic": bool(np.array_equal(decoded, again)), "threads": _threads(), "time": _now(),
    }


def _run_sweep(task: SweepTask) -> list[dict]:
    image = load_rgb(task.path)
    rows = []
    for point in sweep(CODECS[task.codec], image, task.max_rate, task.done, threads=_threads()):
        rows.append({"image": task.image, **point, "device": "cpu", "threads": _threads(), "time": _now()})
    return rows


def _threads() -> int:
    if _THREADS is not None:
        return _THREADS
    import torch

    return torch.get_num_threads()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def execute(tasks: list, results: Path, jobs: int, write: bool = True) -> tuple[list[dict], list[dict]]:
    """Run ``tasks`` on ``jobs`` processes (in this one for 1), appending rows to ``results`` as they finish."""
    from tqdm import tqdm

    threads = max(1, _cores() // jobs)
    new_rows: list[dict] = []
    errors: list[dict] = []
    bar = tqdm(total=len(tasks), desc="rd", unit="task", dynamic_ncols=True)

    def finished(task, rows: list[dict]) -> None:
        good = [r for r in rows if "error" not in r]
        errors.extend(r for r in rows if "error" in r)
        for r in rows:
            if "error" in r:
                tqdm.write(f"FAILED {r['task']}: {r['error']}", file=sys.stderr)
        if write and good:
            append_rows(results, good)
        new_rows.extend(good)
        last = good[-1] if good else None
        if last is not None:
            bar.set_postfix_str(f"{task.describe()}: {last['bpp']:.3f} bpp {last['psnr']:.2f} dB", refresh=False)
        bar.update(1)

    try:
        if jobs <= 1 or len(tasks) <= 1:
            _run_here(tasks, threads, finished)
        else:
            _run_in_workers(tasks, jobs, threads, finished)
    finally:
        bar.close()
    return new_rows, errors


def _run_here(tasks: list, threads: int, finished: Callable[[object, list[dict]], None]) -> None:
    """The tasks one after another in this process, with torch limited to ``threads`` meanwhile."""
    global _THREADS
    import torch

    saved = torch.get_num_threads()
    _THREADS = threads
    torch.set_num_threads(threads)
    try:
        for task in tasks:
            finished(task, run_task(task))
    finally:
        torch.set_num_threads(saved)
        _THREADS = None


def _run_in_workers(tasks: list, jobs: int, threads: int, finished: Callable[[object, list[dict]], None]) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_task, task): task for task in tasks}
        for future in as_completed(futures):
            finished(futures[future], future.result())
