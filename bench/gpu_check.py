"""The prepared device check: everything a lent GPU should measure, in one call, written under ``$OUT``.

    python -m bench.gpu_check                 # on a CUDA machine; well inside 8 minutes on an H200
    python -m bench.gpu_check --dry-run       # the same steps on the CPU with tiny sizes (a test runs this)

Steps, each a subprocess with its own time limit so that one failure still brings back the rest:

1. ``env``: torch, triton, the card;
2. ``triton-tests``: tests/kernels/test_triton.py natively (in the interpreter on a dry run, a subset);
3. ``rd``: the six images at 0.125 and 0.5 bpp through ``bench.rd --device cuda``, beside the same images'
   CPU rows from ``bench/results`` (the same encoder: bench.digests ties the two);
4. ``kernels``: the kernel benchmark (``bench.kernel_speed``; CUDA only, skipped on a dry run);
5. ``profile``: ``bench.profile_encode``'s host/device split of one encode;
6. ``decode-check``: a GPU-encoded file decoded twice on the CPU, bit-exact, and within 0.1 dB of the
   encoder's own PSNR report.

It installs nothing. The summary block, ready for BENCHMARKS.md, is printed and written to ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bench.paths import KODAK
from bench.rd.cli import RESULTS_DIR
from bench.rd.store import load_results

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("kodim01", "kodim04", "kodim07", "kodim13", "kodim19", "kodim22")
RATES = (0.125, 0.5)
# The CPU rows of the same encoder, by rate: the 24-image run at 0.125 (bench.rd rows), the texture layer's
# ablation at 0.5 (bench.ablation rows of the shipped method).
CPU_RESULTS = {0.125: RESULTS_DIR / "rd-kodak-v7.jsonl", 0.5: RESULTS_DIR / "ablation-v8-texture-0.5.jsonl"}
DECODE_TOLERANCE_DB = 0.1
DRY_CROP = (300, 200, 364, 248)  # 64 x 48 of each image on a dry run
DRY_ITERATIONS = 30


@dataclass
class Step:
    name: str
    status: str = "not run"  # ok | failed | skipped
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)  # what the summary says of it, a bullet each
    block: list[str] = field(default_factory=list)  # a table it prints, kept as it is


@dataclass(frozen=True)
class Plan:
    """What the run does: the real sizes on a GPU, tiny ones on the CPU for a dry run."""

    dry: bool
    out: Path
    data: Path
    images: tuple[str, ...]
    rates: tuple[float, ...]
    device: str
    iterations: int | None  # None: the codec's own

    @classmethod
    def make(cls, dry: bool, out: Path) -> "Plan":
        if not dry:
            return cls(False, out, KODAK, IMAGES, RATES, "cuda", None)
        crops = out / "dry-data"
        crops.mkdir(parents=True, exist_ok=True)
        for name in IMAGES[:1]:
            Image.open(KODAK / f"{name}.png").convert("RGB").crop(DRY_CROP).save(crops / f"{name}.png")
        return cls(True, out, crops, IMAGES[:1], RATES[1:], "cpu", DRY_ITERATIONS)


def run_step(step: Step, plan: Plan, command: list[str], timeout: float, env: dict | None = None) -> str:
    """Run one step's command, its output kept in ``<out>/<step>.log``; returns the output."""
    log = plan.out / f"{step.name}.log"
    started = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})})
        output, ok = result.stdout + result.stderr, result.returncode == 0
    except subprocess.TimeoutExpired as exc:
        output, ok = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout:.0f} s", False
    step.seconds = time.perf_counter() - started
    log.write_text(f"$ {' '.join(command)}\n{output}")
    step.status = "ok" if ok else "failed"
    if not ok:
        step.lines.append(f"failed; last lines of {log.name}: " + " | ".join(output.strip().splitlines()[-3:]))
    return output


def step_env(step: Step, plan: Plan) -> None:
    code = ("import torch, triton, json; print(json.dumps({'torch': torch.__version__, 'triton': triton.__version__,"
            " 'cuda': torch.cuda.is_available(), 'card': torch.cuda.get_device_name(0) if torch.cuda.is_available()"
            " else 'none'}))")
    output = run_step(step, plan, [sys.executable, "-c", code], 120)
    if step.status == "ok":
        info = json.loads(output.strip().splitlines()[-1])
        step.lines.append(f"card {info['card']}; torch {info['torch']}, triton {info['triton']}")
        if not plan.dry and not info["cuda"]:
            step.status = "failed"
            step.lines.append("no CUDA device: run with --dry-run on a CPU machine")


def step_triton_tests(step: Step, plan: Plan) -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/kernels/test_triton.py"]
    if plan.dry:  # the interpreter is slow: one case of the agreement test stands for the file
        command += ["-k", "test_rejects_unknown_mode or test_float64_inputs"]
    output = run_step(step, plan, command, 300)
    summary = [line for line in output.splitlines() if " passed" in line or " failed" in line]
    step.lines.append(summary[-1].strip("= ") if summary else "no pytest summary line")


def step_rd(step: Step, plan: Plan) -> None:
    results = plan.out / "rd-gpu.jsonl"
    command = [sys.executable, "-m", "bench.rd", "--data", str(plan.data), "--images", ",".join(plan.images),
               "--rates", ",".join(map(str, plan.rates)), "--codecs", "ours", "--device", plan.device,
               "--results", str(results), "--no-write"]
    if plan.iterations:
        command += ["--iterations", str(plan.iterations)]
    run_step(step, plan, command, 420)
    ours = [r for r in load_results(results).values() if r["codec"] == "ours"]
    for rate in plan.rates:
        rows = {r["image"]: r for r in ours if r["target_bpp"] == rate}
        step.lines.append(_rate_line(rate, rows, _cpu_rows(rate), plan))


def _cpu_rows(rate: float) -> dict[str, dict]:
    """The shipped encoder's CPU rows at ``rate`` by image, with ``psnr`` and ``encode_s``."""
    path = CPU_RESULTS[rate]
    if path.name.startswith("ablation"):
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return {r["image"]: {**r, "encode_s": r["seconds"]} for r in rows
                if r["variant"] == "default (as shipped)" and r["target"] == rate}
    return {r["image"]: r for r in load_results(path).values()
            if r["codec"] == "ours" and r["target_bpp"] == rate and r.get("method") == "default"}


def _rate_line(rate: float, rows: dict, cpu: dict, plan: Plan) -> str:
    if not rows:
        return f"{rate} bpp: no rows"
    mean = lambda key, table: float(np.mean([table[name][key] for name in rows]))  # noqa: E731
    line = (f"{rate} bpp on {len(rows)} images ({plan.device}): {mean('psnr', rows):.2f} dB at "
            f"{mean('bpp', rows):.4f} bpp, median encode {np.median([r['encode_s'] for r in rows.values()]):.2f} s, "
            f"median decode {1000 * np.median([r['decode_s'] for r in rows.values()]):.1f} ms")
    if not plan.dry and set(rows) <= set(cpu):
        line += (f"; the same images on the CPU ({CPU_RESULTS[rate].name}): {mean('psnr', cpu):.2f} dB "
                 f"({mean('psnr', rows) - mean('psnr', cpu):+.2f}), median encode "
                 f"{np.median([cpu[name]['encode_s'] for name in rows]):.1f} s")
    return line


def step_kernels(step: Step, plan: Plan) -> None:
    if plan.dry:
        step.status = "skipped"
        step.lines.append("needs CUDA (the interpreter is far too slow to time)")
        return
    out = plan.out / "kernels.json"
    run_step(step, plan, [sys.executable, "-m", "bench.kernel_speed", "--no-write", "--out", str(out)], 300)
    if out.exists():
        step.block.extend(json.loads(out.read_text())["markdown"].strip().splitlines())


def step_profile(step: Step, plan: Plan) -> None:
    image = plan.data / f"{plan.images[0]}.png"
    command = [sys.executable, "-m", "bench.profile_encode", "--image", str(image), "--device", plan.device,
               "--iterations", str(plan.iterations or 200), "--rows", "10"]
    output = run_step(step, plan, command, 300)
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("phase")), None)
    end = next((i for i, line in enumerate(lines) if " iterations in " in line), None)
    if start is None or end is None:
        step.lines.append("no phase table")
    else:
        step.block.extend(lines[start:end + 1])


def step_decode_check(step: Step, plan: Plan) -> None:
    """Encode on the plan's device, decode on the CPU twice: bit-exact, and the encoder's PSNR report within
    the tolerance of the CPU decode's."""
    code = (
        "import sys, json, numpy as np, codec\n"
        "path, device, iterations = sys.argv[1], sys.argv[2], (int(sys.argv[3]) or None)\n"
        "report = codec.encode_with_report(path, 0.125, device=device, iterations=iterations)\n"
        "first, second = codec.decode(report.data, device='cpu'), codec.decode(report.data, device='cpu')\n"
        "psnr = codec.psnr(codec.load_image(path), first)\n"
        "print(json.dumps({'same': bool(np.array_equal(first, second)), 'psnr': psnr, 'report': report.psnr,"
        " 'bpp': report.bpp, 'device': report.device, 'seconds': report.seconds}))\n")
    image = plan.data / f"{plan.images[0]}.png"
    output = run_step(step, plan, [sys.executable, "-c", code, str(image), plan.device, str(plan.iterations or 0)],
                      300)
    if step.status != "ok":
        return
    got = json.loads(output.strip().splitlines()[-1])
    gap = abs(got["psnr"] - got["report"])
    if not got["same"] or gap > DECODE_TOLERANCE_DB:
        step.status = "failed"
    step.lines.append(f"{image.stem} encoded on {got['device']} in {got['seconds']:.2f} s, {got['bpp']:.4f} bpp; "
                      f"two CPU decodes {'identical' if got['same'] else 'DIFFER'}; CPU-decode PSNR "
                      f"{got['psnr']:.3f} dB against the encoder's report {got['report']:.3f} (gap {gap:.3f}, "
                      f"allowed {DECODE_TOLERANCE_DB})")


STEPS = {"env": step_env, "triton-tests": step_triton_tests, "rd": step_rd, "kernels": step_kernels,
         "profile": step_profile, "decode-check": step_decode_check}


def summary(steps: list[Step], plan: Plan, seconds: float) -> str:
    head = f"### Device check ({'dry run on the CPU' if plan.dry else 'GPU'}): `python -m bench.gpu_check" \
           f"{' --dry-run' if plan.dry else ''}`, {seconds:.0f} s in all\n"
    body = []
    for step in steps:
        body.append(f"- **{step.name}**: {step.status} ({step.seconds:.0f} s)")
        body.extend(f"  - {line}" for line in step.lines)
        if step.block:
            body.extend(["", "  ```", *(f"  {line}" for line in step.block), "  ```"])
    return head + "\n" + "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU with tiny sizes")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check-out"),
                        help="where the logs, results and summary go (default: $OUT)")
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of the steps")
    args = parser.parse_args(argv)
    names = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(names) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {list(STEPS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    plan = Plan.make(args.dry_run, args.out.resolve())
    started, steps = time.perf_counter(), []
    for name in names:
        step = Step(name)
        steps.append(step)
        print(f"==> {name}", flush=True)
        STEPS[name](step, plan)
        print(f"    {step.status} in {step.seconds:.0f} s", flush=True)
    text = summary(steps, plan, time.perf_counter() - started)
    (plan.out / "summary.md").write_text(text)
    print(text)
    return 0 if all(step.status in ("ok", "skipped") for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
