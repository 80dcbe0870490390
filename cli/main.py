"""gsic encode IN OUT.gsi --bpp 0.125 | gsic decode IN.gsi OUT.png | gsic info IN.gsi | gsic serve | gsic worker |
gsic hash-key | gsic bench."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

# torch's and numba's OpenMP threads share the cores; spinning idle threads can starve each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import codec  # noqa: E402  (the decoder only: the trainer loads on an encode's first use of it)
from codec.decode.view import parse_box  # noqa: E402
from codec.image_io import PNG_OPTIONS  # noqa: E402


# Commands that start nothing and leave nothing open: once their output is flushed, the process may end
# without the interpreter's teardown, which after numba's compiled functions are loaded takes longer than
# the whole decode.
QUICK_EXIT = ("decode", "info")


def run() -> None:
    """The ``gsic`` program: ``main`` on the command line's arguments, exiting with its code."""
    code = main()
    if sys.argv[1:2] and sys.argv[1] in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark harness parses its own options
        from bench.rd.cli import main as bench_main

        return bench_main(argv[1:])
    args = _parser(argv[0] if argv else None).parse_args(argv)
    try:
        return args.run(args)
    except (codec.CodecError, ValueError, OSError) as exc:
        print(f"gsic {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gsic", description="2D Gaussian splatting image codec.")
    commands = parser.add_subparsers(dest="command", required=True)

    encode = commands.add_parser("encode", help="encode an image to a .gsi bitstream")
    encode.set_defaults(run=_encode)
    if command == "encode":  # its options name the trainer's methods: only an encode loads them
        _encode_arguments(encode)

    decode = commands.add_parser("decode", help="decode a .gsi bitstream to PNG, at any size or region")
    decode.add_argument("input", type=Path)
    decode.add_argument("output", type=Path)
    decode.add_argument("--device", help="cpu or cuda (default cpu)")
    size = decode.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, help="output size as a factor of the box (0.25: a quarter)")
    size.add_argument("--width", type=int, help="output width in pixels (alone: the height keeps the aspect)")
    decode.add_argument("--height", type=int, help="output height in pixels")
    decode.add_argument("--box", metavar="L,T,R,B",
                        help="render only this region, in pixels of the encoded picture")
    decode.set_defaults(run=_decode)

    info = commands.add_parser("info", help="print a .gsi file's size, bpp, bits per part and header as JSON")
    info.add_argument("input", type=Path)
    info.set_defaults(run=_info)

    serve = commands.add_parser("serve", help="run the HTTP encoder service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="run encode workers of the Redis queue (GSIC_QUEUE_URL)")
    worker.add_argument("--device", action="append", help="cpu, cuda or cuda:N; repeat for one worker per device "
                        "(default: GSIC_DEVICE, i.e. one per GPU, or one on the CPU)")
    worker.add_argument("--name", help="the worker's name in /readyz (default HOST-PID-INDEX; with several "
                        "devices, NAME-INDEX)")
    worker.set_defaults(run=_worker)

    hash_key = commands.add_parser("hash-key", help="print the GSIC_API_KEYS_FILE line (sha256:<hex>) of the API "
                                   "key on stdin")
    hash_key.add_argument("--new", action="store_true", help="make a new random key instead: print the key, "
                          "then its line")
    hash_key.set_defaults(run=_hash_key)

    commands.add_parser("bench", help="rate-distortion benchmark (gsic bench --help)", add_help=False)
    return parser


def _encode_arguments(encode: argparse.ArgumentParser) -> None:
    presets = ", ".join(f"{name} = {bpp} bpp" for name, bpp in codec.RATE_PRESETS.items())
    encode.add_argument("input", type=Path)
    encode.add_argument("output", type=Path)
    rate = encode.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=float, help=f"target bits per pixel, {codec.MIN_BPP} to {codec.MAX_BPP} "
                      f"(default: the {codec.DEFAULT_PRESET} preset, {codec.RATE_PRESETS[codec.DEFAULT_PRESET]} bpp)")
    rate.add_argument("--preset", choices=list(codec.RATE_PRESETS), help=f"a named rate point of the paper: {presets}")
    encode.add_argument("--method", default="default", choices=list(codec.METHODS),
                        help="default (the default): accumulated blending, sorted positions; paper: the "
                             "paper's configuration")
    encode.add_argument("--iterations", type=int, help="optimisation steps (default: "
                        + ", ".join(f"{_steps(m.schedule)} for {m.name}" for m in codec.METHODS.values()) + ")")
    encode.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    encode.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    encode.add_argument("--quiet", action="store_true", help="no progress bar")


def _steps(schedule) -> str:  # a method's step count, or its range where dense sets get more
    most = round(schedule.iterations * schedule.max_step_scale)
    return f"{schedule.iterations}" if not schedule.scale_from_density or most == schedule.iterations \
        else f"{schedule.iterations} to {most}, more for denser sets,"


def _check_writable(path: Path) -> None:
    """Fail before the work, not after it: a missing or read-only directory is known at once."""
    folder = path.parent
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PermissionError(f"cannot write {path}: permission denied")


def _encode(args) -> int:
    from tqdm import tqdm

    _check_writable(args.output)
    options = codec.EncodeOptions(bpp=args.bpp, preset=args.preset, method=args.method,
                                  iterations=args.iterations, seed=args.seed, device=args.device)
    with tqdm(total=1, unit="it", disable=args.quiet, leave=False) as bar:
        def progress(p: codec.Progress) -> None:
            bar.total = p.total
            bar.n = p.iteration
            bar.set_postfix(psnr=f"{p.psnr:.2f}")
            bar.refresh()

        report = codec.encode_with_report(args.input, options=options, progress=progress)
    args.output.write_bytes(report.data)
    print(f"{args.output}: {len(report.data)} bytes, {report.bpp:.4f} bpp, PSNR {report.psnr:.2f} dB, "
          f"{report.n_gaussians} Gaussians, {report.seconds:.1f} s on {report.device}")
    return 0


def _decode(args) -> int:
    from PIL import Image

    _check_writable(args.output)
    started = time.perf_counter()
    pixels = codec.decode(args.input.read_bytes(), device=args.device, width=args.width, height=args.height,
                          scale=args.scale, box=None if args.box is None else parse_box(args.box))
    Image.fromarray(pixels).save(args.output, format="PNG", **PNG_OPTIONS)
    print(f"{args.output}: {pixels.shape[1]}x{pixels.shape[0]} in {time.perf_counter() - started:.3f} s")
    return 0


def _info(args) -> int:
    from codec.format.breakdown import stream_breakdown

    data = args.input.read_bytes()
    header = codec.inspect(data)
    bits = stream_breakdown(data)
    info = {"bytes": len(data), "bpp": round(len(data) * 8 / (header.width * header.height), 6),
            "bits": bits, "bits_share": {part: round(n / (8 * len(data)), 4) for part, n in bits.items()},
            "header": asdict(header)}
    print(json.dumps(info, indent=2))
    return 0


def _hash_key(args) -> int:
    from service.auth import key_entry, new_key

    if args.new:
        key = new_key()
        print(key)
    else:  # from stdin, not an argument: an argument stays in the shell's history and shows in ps
        key = sys.stdin.readline().strip()
        if not key:
            raise ValueError("no key on stdin (or --new to make one)")
    print(key_entry(key))
    return 0


def _serve(args) -> int:
    from service.server import serve

    serve(args.host, args.port)
    return 0


def _worker(args) -> int:
    import asyncio
    import logging

    from service.queue.encoding import worker_devices
    from service.queue.worker import run_workers, worker_name
    from service.settings import Settings

    settings = Settings()
    if not settings.queue_url:
        raise ValueError("set GSIC_QUEUE_URL (redis://host:port/db): the workers take their jobs from Redis")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.device:  # each checked like GSIC_DEVICE; "cuda" means every GPU
        devices = [dev for d in args.device for dev in worker_devices(Settings(device=d).device, None)]
    else:
        devices = worker_devices(settings.device, settings.workers)
    if not devices:
        raise ValueError("GSIC_WORKERS=0 leaves gsic worker no encoder to run; unset it (one worker per GPU, or one "
                         "on the CPU) or set how many to run")
    if args.name and len(devices) == 1:
        names = [args.name]
    else:
        names = [f"{args.name}-{i}" if args.name else worker_name(i) for i in range(len(devices))]
    return asyncio.run(run_workers(settings, devices, names))


if __name__ == "__main__":
    run()
