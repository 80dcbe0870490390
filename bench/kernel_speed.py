"""GPU benchmark of the Triton renderer against the PyTorch reference, on the same card.

    python -m bench.kernel_speed                          # 768x512, N = 1k, 5k, 20k, 100k, then one Kodak encode
    python -m bench.kernel_speed --out kernels.json       # also the raw numbers (and the markdown) as JSON
    python -m bench.kernel_speed --no-codec --sweep       # skip the codec; time other chunk / warp settings

Needs CUDA; installs nothing, reaches no network. For each N: a scene of Gaussians of realistic sizes
(sigma ~ sqrt(HW / N) / 2 with a log-normal spread, any rotation and aspect), median times from
``triton.testing.do_bench`` after warm-up for the Triton forward, forward + backward and its binning
alone, and for ``render_reference`` forward and forward + backward; then the Triton image and
gradients against the reference in float64 (max abs difference of the image, largest relative L2
error over the five gradients). Then, unless ``--no-codec``, one full encode of a Kodak image at
0.125 bpp and one decode on the GPU. The table goes to stdout and to the ``gpu-kernels`` section of
BENCHMARKS.md (bench/report.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import torch

from bench.paths import KODAK
from bench.report import machine_line, write_section

SECTION = "gpu-kernels"
HEIGHT, WIDTH = 512, 768
SIZES = (1_000, 5_000, 20_000, 100_000)
GOAL_N = 20_000  # goals at this N: forward <= 0.5 ms, forward + backward <= 2 ms, >= 10x the reference
# (BLOCK_G, num_warps) tried by --sweep, forward and backward separately.
SWEEP_FORWARD = [(16, 4), (32, 4), (32, 8), (64, 8)]
SWEEP_BACKWARD = [(16, 4), (16, 8), (32, 8), (32, 4)]
PARAM_NAMES = ("means", "scales", "rotations", "colors", "opacities")
DEVICE = "cuda"  # a module global so that the script's logic can be dry-run on CPU in the interpreter


def make_scene(n: int, height: int, width: int, seed: int = 0, device: str | None = None) -> list[torch.Tensor]:
    """N Gaussians that together cover the image a few times over, as an encoder's would."""
    gen = torch.Generator().manual_seed(seed)
    sigma = math.sqrt(height * width / n) / 2
    tensors = [
        torch.rand(n, 2, generator=gen) * torch.tensor([width, height]),  # means
        sigma * torch.exp(0.5 * torch.randn(n, 2, generator=gen)),  # scales: log-normal, anisotropic
        (torch.rand(n, generator=gen) * 2 - 1) * math.pi,  # rotations
        torch.rand(n, 3, generator=gen),  # colors
        0.2 + 0.8 * torch.rand(n, generator=gen),  # opacities
    ]
    return [t.to(device or DEVICE) for t in tensors]


def median_ms(fn) -> float:
    from triton.testing import do_bench

    for _ in range(3):  # compile and fill the caching allocator before timing
        fn()
    torch.cuda.synchronize()
    return float(do_bench(fn, warmup=25, rep=200, return_mode="median"))


def forward_fn(render, params, height, width):
    def run():
        with torch.no_grad():
            render(*params, height, width)
    return run


def forward_backward_fn(render, params, height, width, grad_image):
    leaves = [p.detach().clone().requires_grad_(True) for p in params]

    def run():
        image = render(*leaves, height, width)
        torch.autograd.grad(image, leaves, grad_image)
    return run


def agreement(params, height, width, grad_image, render=None, dtype=torch.float32, mode="alpha") -> dict:
    """``render`` (default: Triton) in ``dtype`` against the reference in float64 on the same inputs."""
    from kernels.reference import render_reference

    if render is None:
        from kernels.triton_blend import render_triton as render

    def run(fn, run_dtype):
        leaves = [p.detach().to(run_dtype).clone().requires_grad_(True) for p in params]
        image = fn(*leaves, height, width, mode)
        grads = torch.autograd.grad(image, leaves, grad_image.to(run_dtype))
        return image.detach().double(), [g.double() for g in grads]

    image, grads = run(render, dtype)
    ref_image, ref_grads = run(render_reference, torch.float64)
    rel = {name: float((g - r).norm() / r.norm().clamp_min(1e-300))
           for name, g, r in zip(PARAM_NAMES, grads, ref_grads)}
    return {"image_max_abs_diff": float((image - ref_image).abs().max()), "grad_rel_l2": rel,
            "grad_rel_l2_max": max(rel.values())}


def bench_size(n: int, height: int, width: int) -> dict:
    from kernels.binning import bin_gaussians
    from kernels.reference import render_reference
    from kernels.triton_blend import render_triton

    params = make_scene(n, height, width, seed=n)
    grad_image = torch.randn(height, width, 3, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    bins = bin_gaussians(*params[:3], height, width)
    row = {"n": n, "pairs": int(bins.gids.numel()),
           "triton_bin_ms": median_ms(lambda: bin_gaussians(*params[:3], height, width)),
           "triton_fwd_ms": median_ms(forward_fn(render_triton, params, height, width)),
           "triton_fwd_bwd_ms": median_ms(forward_backward_fn(render_triton, params, height, width, grad_image)),
           "ref_fwd_ms": median_ms(forward_fn(render_reference, params, height, width)),
           "ref_fwd_bwd_ms": median_ms(forward_backward_fn(render_reference, params, height, width, grad_image))}
    row.update(agreement(params, height, width, grad_image))
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return row


def sweep(height: int, width: int, n: int = GOAL_N) -> list[dict]:
    """Forward and forward + backward times at N for other (BLOCK_G, num_warps) settings."""
    from kernels import triton_blend

    params = make_scene(n, height, width, seed=n)
    grad_image = torch.randn(height, width, 3, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    saved = {k: dict(v) for k, v in triton_blend.LAUNCH["gpu"].items()}
    rows = []
    try:
        for which, configs in (("forward", SWEEP_FORWARD), ("backward", SWEEP_BACKWARD)):
            for block_g, warps in configs:
                triton_blend.LAUNCH["gpu"] = {**saved, which: {"BLOCK_G": block_g, "num_warps": warps}}
                fn = (forward_fn(triton_blend.render_triton, params, height, width) if which == "forward" else
                      forward_backward_fn(triton_blend.render_triton, params, height, width, grad_image))
                rows.append({"kernel": which, "BLOCK_G": block_g, "num_warps": warps, "ms": median_ms(fn)})
                print(f"  sweep {which:8s} BLOCK_G={block_g:3d} num_warps={warps}: {rows[-1]['ms']:.3f} ms"
                      f" ({'forward' if which == 'forward' else 'forward + backward'})", flush=True)
    finally:
        triton_blend.LAUNCH["gpu"] = saved
    return rows


def bench_codec(image_path: Path) -> dict:
    """One encode at 0.125 bpp and one decode on the GPU; a dict with "skipped" when it cannot run."""
    if not image_path.is_file():
        return {"skipped": f"no Kodak image at {image_path}; pass --image"}
    try:
        import codec
    except Exception as exc:  # the codec is being written alongside: report, don't fail the kernel numbers
        return {"skipped": f"codec does not import: {exc!r}"}
    try:
        torch.cuda.synchronize()
        started = time.perf_counter()
        report = codec.encode_with_report(str(image_path), 0.125, device="cuda")
        torch.cuda.synchronize()
        encode_s = time.perf_counter() - started
        started = time.perf_counter()
        codec.decode(report.data, device="cuda")
        torch.cuda.synchronize()
        decode_s = time.perf_counter() - started
    except Exception as exc:
        return {"skipped": f"codec failed: {exc!r}"}
    return {"image": image_path.name, "encode_s": encode_s, "decode_s": decode_s, "bpp": report.bpp,
            "psnr": report.psnr, "n_gaussians": report.n_gaussians, "device": report.device}


def markdown(rows: list[dict], codec_row: dict | None, sweep_rows: list[dict], height: int, width: int) -> str:
    lines = [
        "## GPU kernels (`python -m bench.kernel_speed`)",
        "",
        f"Machine: {machine_line()}; triton {_triton_version()}.",
        "",
        f"{width}x{height}, random scenes with sigma ~ sqrt(HW/N)/2 (log-normal spread). Median ms of "
        "`triton.testing.do_bench`. Reference: `render_reference` (float32) on the same GPU. "
        "Agreement: Triton against the reference in float64 (image: max abs difference; gradients: largest "
        "relative L2 error of the five).",
        "",
        "| N | pairs | bin ms | Triton fwd ms | Triton fwd+bwd ms | ref fwd ms | ref fwd+bwd ms "
        "| speed-up fwd | speed-up fwd+bwd | max abs diff image | grad rel err |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['pairs']:,} | {r['triton_bin_ms']:.3f} | {r['triton_fwd_ms']:.3f} "
            f"| {r['triton_fwd_bwd_ms']:.3f} | {r['ref_fwd_ms']:.2f} | {r['ref_fwd_bwd_ms']:.2f} "
            f"| {r['ref_fwd_ms'] / r['triton_fwd_ms']:.0f}x | {r['ref_fwd_bwd_ms'] / r['triton_fwd_bwd_ms']:.0f}x "
            f"| {r['image_max_abs_diff']:.1e} | {r['grad_rel_l2_max']:.1e} |")
    goal = next((r for r in rows if r["n"] == GOAL_N), None)
    if goal is not None:
        checks = [("forward <= 0.5 ms", goal["triton_fwd_ms"] <= 0.5),
                  ("forward+backward <= 2 ms", goal["triton_fwd_bwd_ms"] <= 2.0),
                  (">= 10x the reference", min(goal["ref_fwd_ms"] / goal["triton_fwd_ms"],
                                               goal["ref_fwd_bwd_ms"] / goal["triton_fwd_bwd_ms"]) >= 10)]
        lines += ["", f"Goals at N = {GOAL_N:,}: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}"
                                                            for name, ok in checks) + "."]
    if codec_row is not None:
        lines.append("")
        if "skipped" in codec_row:
            lines.append(f"Codec on the GPU: skipped ({codec_row['skipped']}).")
        else:
            c = codec_row
            lines.append(f"Codec on the GPU, {c['image']} at 0.125 bpp: encode {c['encode_s']:.1f} s, decode "
                         f"{c['decode_s'] * 1e3:.0f} ms; {c['bpp']:.4f} bpp, {c['psnr']:.2f} dB, "
                         f"{c['n_gaussians']:,} Gaussians, device {c['device']}.")
    if sweep_rows:
        lines += ["", f"Launch settings at N = {GOAL_N:,} (`--sweep`; the other kernel at its default):", "",
                  "| kernel timed | BLOCK_G | num_warps | ms |", "|---|---:|---:|---:|"]
        lines += [f"| {'forward' if s['kernel'] == 'forward' else 'forward+backward'} | {s['BLOCK_G']} "
                  f"| {s['num_warps']} | {s['ms']:.3f} |" for s in sweep_rows]
    return "\n".join(lines) + "\n"


def _triton_version() -> str:
    import triton

    return triton.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated N")
    parser.add_argument("--height", type=int, default=HEIGHT)
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--codec", action=argparse.BooleanOptionalAction, default=True,
                        help="also time one Kodak encode at 0.125 bpp and one decode (default: on)")
    parser.add_argument("--image", type=Path, default=None, help="Kodak image for the codec run")
    parser.add_argument("--sweep", action="store_true", help="also time other BLOCK_G / num_warps settings")
    parser.add_argument("--out", type=Path, default=None, help="write the raw numbers here as JSON")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.kernel_speed needs a CUDA GPU (the Triton interpreter is far too slow to time)", file=sys.stderr)
        return 1

    rows, failures = [], []
    for n in (int(s) for s in args.sizes.split(",") if s):
        started = time.perf_counter()
        try:
            rows.append(bench_size(n, args.height, args.width))
        except Exception as exc:  # one run on a lent GPU must still bring back what it can
            traceback.print_exc()
            failures.append({"n": n, "error": repr(exc)})
            continue
        r = rows[-1]
        print(f"N={n:>7,}: triton fwd {r['triton_fwd_ms']:.3f} ms, fwd+bwd {r['triton_fwd_bwd_ms']:.3f} ms; "
              f"reference fwd {r['ref_fwd_ms']:.2f} ms, fwd+bwd {r['ref_fwd_bwd_ms']:.2f} ms; "
              f"image diff {r['image_max_abs_diff']:.1e}, grad rel err {r['grad_rel_l2_max']:.1e} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    sweep_rows = []
    if args.sweep:
        try:
            sweep_rows = sweep(args.height, args.width)
        except Exception:
            traceback.print_exc()
    codec_row = None
    if args.codec:
        image = args.image or KODAK / "kodim23.png"
        codec_row = bench_codec(image)
        print(f"codec: {codec_row}", flush=True)

    text = markdown(rows, codec_row, sweep_rows, args.height, args.width)
    if failures:
        text += "\n" + "\n".join(f"N = {f['n']:,} failed: `{f['error']}`" for f in failures) + "\n"
    print()
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine_line(), "height": args.height, "width": args.width,
                                        "sizes": rows, "failures": failures, "sweep": sweep_rows, "codec": codec_row,
                                        "launch": _launch(), "markdown": text}, indent=2))
    return 1 if failures else 0


def _launch() -> dict:
    from kernels import triton_blend

    return triton_blend.LAUNCH["gpu"]


if __name__ == "__main__":
    sys.exit(main())
