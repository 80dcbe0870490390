"""Where an encode spends its time: host time against device time per phase, then the top operations.

    python -m bench.profile_encode --image ../shared/data/kodak/kodim23.png --iterations 200 [--device cuda]

torch.profiler over one encode; the encoder marks its phases (``gsic.fit``, ``gsic.quantise``,
``gsic.train_quantised``, ``gsic.write``). Per phase:

* host: the phase's wall time on the host thread, from its first to its last Python statement;
* device: on CUDA, the summed durations of the GPU kernels its operations launched (the profiler's
  CUPTI kernel events); on the CPU, where host and device are one processor, the time spent inside
  operators (aten ops, the renderer's forward and backward), so host - device is the Python between them.

A host time well above the device time means the phase is bound by the host (issue 18: 87 ms of GPU
work in 3.2 s on an H200). Steps are counted as renders (forward calls of the renderer's autograd function).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import codec

RENDER_FUNCTIONS = ("_RenderCPU", "_BlendTriton")  # the renderers' autograd functions: one forward per step


@dataclass(frozen=True)
class PhaseTime:
    name: str
    host_s: float
    device_s: float
    steps: int


def phase_times(events, on_cuda: bool) -> list[PhaseTime]:
    """Host and device seconds of each ``gsic.*`` range in a profiler's ``events()``."""
    phases = []
    for phase in (e for e in events if e.name.startswith("gsic.")):
        start, end = phase.time_range.start, phase.time_range.end
        inside = [e for e in events if e is not phase and e.thread == phase.thread
                  and start <= e.time_range.start and e.time_range.end <= end]
        if on_cuda:
            device_us = sum(e.self_device_time_total for e in inside)
        else:  # operators directly under the phase range, each with everything it called
            device_us = sum(e.cpu_time_total for e in inside if e.cpu_parent is phase and not e.is_user_annotation)
        steps = sum(e.name in RENDER_FUNCTIONS for e in inside)
        phases.append(PhaseTime(phase.name.removeprefix("gsic."), (end - start) / 1e6, device_us / 1e6, steps))
    return phases


def format_phases(phases: list[PhaseTime], device: str) -> str:
    lines = [f"{'phase':<16}{'steps':>7}{'host s':>10}{'device s':>10}{'host/step ms':>14}{'device/step ms':>16}"]
    for p in phases:
        per_step = (f"{1000 * p.host_s / p.steps:>14.2f}{1000 * p.device_s / p.steps:>16.2f}" if p.steps
                    else f"{'-':>14}{'-':>16}")
        lines.append(f"{p.name:<16}{p.steps:>7}{p.host_s:>10.3f}{p.device_s:>10.3f}{per_step}")
    host, busy = sum(p.host_s for p in phases), sum(p.device_s for p in phases)
    lines.append(f"{'all':<16}{sum(p.steps for p in phases):>7}{host:>10.3f}{busy:>10.3f}"
                 f"   device busy {100 * busy / host:.0f} % of the host time on {device}")
    return "\n".join(lines)


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
    on_cuda = len(activities) > 1
    sort_key = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
    print(profile.key_averages().table(sort_by=sort_key, row_limit=args.rows))
    print(format_phases(phase_times(profile.events(), on_cuda), report.device))
    print(f"{args.iterations} iterations in {seconds:.2f} s under the profiler "
          f"({1000 * seconds / args.iterations:.1f} ms each); {report.psnr:.2f} dB at {report.bpp:.4f} bpp on {report.device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
