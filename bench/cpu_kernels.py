"""CPU benchmark of the numba renderer against the PyTorch reference, on the same cores.

    python -m bench.cpu_kernels                      # 768x512, N = 500, 2k, 5k; both blend modes
    python -m bench.cpu_kernels --sizes 2000 --no-write

The scenes are those of ``bench.kernel_speed`` (sigma ~ sqrt(HW / N) / 2, log-normal spread, any rotation
and aspect). For each N and blend mode: median wall time over ``--repeats`` runs, after a warm-up, of
the numba forward and forward + backward (``kernels.cpu.render_cpu``, float32 in and out) and of
``render_reference`` (float32); then numba against the reference in float64 (image: max abs difference;
gradients: largest relative L2 error of the five). The table goes to stdout and to the ``cpu-kernels``
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from bench.kernel_speed import PARAM_NAMES, agreement, forward_backward_fn, forward_fn, make_scene
from bench.report import machine_line, write_section

SECTION = "cpu-kernels"
HEIGHT, WIDTH = 512, 768
SIZES = (500, 2_000, 5_000)  # an encode at 0.125 bpp ends near 1,500 Gaussians, at 0.25 near 3,000


def median_ms(fn, repeats: int) -> float:
    fn()  # numba compiles (or loads its cache) on the first call
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def bench_size(n: int, mode: str, height: int, width: int, repeats: int) -> dict:
    from kernels.cpu import render_cpu
    from kernels.reference import render_reference

    def with_mode(render):
        return lambda *args: render(*args, mode)

    params = make_scene(n, height, width, seed=n, device="cpu")
    grad_image = torch.randn(height, width, 3, generator=torch.Generator().manual_seed(1))
    row = {"n": n, "mode": mode}
    for name, render in (("numba", render_cpu), ("ref", render_reference)):
        row[f"{name}_fwd_ms"] = median_ms(forward_fn(with_mode(render), params, height, width), repeats)
        row[f"{name}_fwd_bwd_ms"] = median_ms(
            forward_backward_fn(with_mode(render), params, height, width, grad_image), repeats)
    row.update(agreement(params, height, width, grad_image, render_cpu, torch.float64, mode))
    return row


def markdown(rows: list[dict], height: int, width: int, repeats: int) -> str:
    lines = [
        "## CPU kernels (`python -m bench.cpu_kernels`)",
        "",
        f"Machine: {machine_line()}; torch threads {torch.get_num_threads()}.",
        "",
        f"{width}x{height}, the random scenes of `bench.kernel_speed`. Median ms over {repeats} runs after a warm-up. "
        "numba: `kernels.cpu.render_cpu`; reference: `render_reference`; both float32 on the same cores. "
        "Agreement: numba against the reference in float64 (image: max abs difference; gradients: largest "
        f"relative L2 error of the {len(PARAM_NAMES)}).",
        "",
        "| N | mode | numba fwd ms | numba fwd+bwd ms | ref fwd ms | ref fwd+bwd ms | speed-up fwd "
        "| speed-up fwd+bwd | max abs diff image | grad rel err |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['mode']} | {r['numba_fwd_ms']:.1f} | {r['numba_fwd_bwd_ms']:.1f} "
            f"| {r['ref_fwd_ms']:.0f} | {r['ref_fwd_bwd_ms']:.0f} | {r['ref_fwd_ms'] / r['numba_fwd_ms']:.1f}x "
            f"| {r['ref_fwd_bwd_ms'] / r['numba_fwd_bwd_ms']:.1f}x | {r['image_max_abs_diff']:.1e} "
            f"| {r['grad_rel_l2_max']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated N")
    parser.add_argument("--modes", default="sum,alpha", help="comma-separated blend modes")
    parser.add_argument("--height", type=int, default=HEIGHT)
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    rows = []
    for n in (int(s) for s in args.sizes.split(",") if s):
        for mode in args.modes.split(","):
            rows.append(bench_size(n, mode, args.height, args.width, args.repeats))
            r = rows[-1]
            print(f"N={n:>6,} {mode:>5}: numba fwd {r['numba_fwd_ms']:.1f} ms, fwd+bwd {r['numba_fwd_bwd_ms']:.1f} ms; "
                  f"reference fwd {r['ref_fwd_ms']:.0f} ms, fwd+bwd {r['ref_fwd_bwd_ms']:.0f} ms", flush=True)
    text = markdown(rows, args.height, args.width, args.repeats)
    print()
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
