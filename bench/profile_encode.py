"""Where an encode spends its time: torch.profiler over a short encode, top operations by self time.

    python -m bench.profile_encode --image ../shared/data/kodak/kodim23.png --iterations 200 [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import codec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--bpp", type=float, default=0.125)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--device", default=None)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args(argv)
    codec.encode(args.image, 0.5, iterations=4, device=args.device)  # compile kernels outside the profile
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available() and args.device != "cpu":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    started = time.perf_counter()
    with torch.profiler.profile(activities=activities) as profile:
        report = codec.encode_with_report(args.image, args.bpp, iterations=args.iterations, device=args.device)
    seconds = time.perf_counter() - started
    sort_key = "self_cuda_time_total" if len(activities) > 1 else "self_cpu_time_total"
    print(profile.key_averages().table(sort_by=sort_key, row_limit=args.rows))
    print(f"{args.iterations} iterations in {seconds:.2f} s under the profiler "
          f"({1000 * seconds / args.iterations:.1f} ms each); {report.psnr:.2f} dB at {report.bpp:.4f} bpp on {report.device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
