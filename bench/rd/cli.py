"""Rate–distortion benchmark on Kodak: our codec against the paper's Table 1, JPEG, WebP, AVIF, JPEG 2000,
JPEG XL and HEIF.

    python -m bench.rd                         # all of ../shared/data/kodak at the default rates
    python -m bench.rd --images kodim01,kodim05 --rates 0.125 --iterations 200
    python -m bench.rd --method default,paper --jobs 2

Every image is encoded at every target rate; the real files are decoded and measured (real bpp from the
file size, RGB PSNR, MS-SSIM, encode and decode seconds, Gaussian count, device). Finished rows are
appended to a JSON-lines results file and skipped on a rerun, so an interrupted run resumes. The Pillow
baselines are quality sweeps on the same images, interpolated to the same rates. The report is the
section ``--section`` of BENCHMARKS.md (see bench/report.py), with two plots under ``--plots-dir``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from bench.baselines import CODECS, CodecUnavailable, parse_paper_table
from bench.paths import KODAK, PAPER_TABLE, REPO, RESULTS_DIR
from bench.rd.analysis import Analysis, analyse, parse_paper_time
from bench.rd.plan import ImageInfo, OursTask, find_images, plan_tasks, row_key
from bench.rd.plot import write_plots
from bench.rd.report import render_markdown
from bench.rd.run import execute, ours_setting
from bench.rd.store import load_results
from bench.report import machine_line, write_section

BENCHMARKS = REPO / "BENCHMARKS.md"
DEFAULT_RATES = (0.042, 0.066, 0.125, 0.183, 0.25, 0.5)  # the paper's four, then two higher
DEFAULT_SECTION = "rd-kodak"
METHODS = ("default", "paper")
ALL_CODECS = ("ours", *CODECS)


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _rates(text: str) -> list[float]:
    try:
        rates = sorted({float(t) for t in _list(text)})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad rate list {text!r}") from exc
    if not rates or rates[0] <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.rd", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=KODAK, help="folder of images (default: %(default)s)")
    p.add_argument("--images", type=_list, default=None, help="comma-separated image names, e.g. kodim01,kodim05")
    p.add_argument("--rates", type=_rates, default=list(DEFAULT_RATES),
                   help="comma-separated target bpp (default: %(default)s)")
    p.add_argument("--method", dest="methods", type=_list, default=["default"],
                   help=f"codec method(s), comma-separated, of {', '.join(METHODS)} (default: default)")
    p.add_argument("--iterations", type=int, default=None, help="override the codec's iteration count (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="codec device (default: the codec's choice)")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes; each gets cores // jobs torch threads")
    p.add_argument("--codecs", type=_list, default=list(ALL_CODECS),
                   help=f"which of {', '.join(ALL_CODECS)} to run (default: all)")
    p.add_argument("--paper", type=Path, default=PAPER_TABLE, help="the paper's Table 1 (markdown)")
    p.add_argument("--section", default=DEFAULT_SECTION, help="BENCHMARKS.md section (default: %(default)s)")
    p.add_argument("--results", type=Path, default=None,
                   help="JSON-lines results file (default: bench/results/<section>.jsonl)")
    p.add_argument("--benchmarks", type=Path, default=BENCHMARKS,
                   help="the markdown file written (default: %(default)s)")
    p.add_argument("--plots-dir", type=Path, default=None,
                   help="where the plots go (default: the results file's folder)")
    p.add_argument("--save-bitstreams", type=Path, default=None, help="also keep our .gsi files in this folder")
    p.add_argument("--no-write", action="store_true",
                   help="print the report instead of writing BENCHMARKS.md and the plots")
    p.add_argument("--report-only", action="store_true", help="encode nothing; report from the results file")
    return p


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot check by itself; exits with a usage error like argparse does."""
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        parser.error(f"--method must be from {', '.join(METHODS)}, got {', '.join(bad) or 'nothing'}")
    bad = [c for c in args.codecs if c not in ALL_CODECS]
    if bad or not args.codecs:
        parser.error(f"--codecs must be from {', '.join(ALL_CODECS)}, got {', '.join(bad) or 'nothing'}")
    if not args.report_only:  # a missing plugin is found now, not hours into a run
        for name in (c for c in args.codecs if c != "ours"):
            try:
                CODECS[name].require()
            except CodecUnavailable as exc:
                parser.error(f"{exc}; install it or leave {name} out of --codecs")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["rd"]:  # `gsic bench rd ...` may pass its sub-command along
        argv = argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    results = args.results or (RESULTS_DIR / f"{args.section}.jsonl")
    images = find_images(args.data, args.images)
    rows, errors = _run(args, images, results)
    paper = parse_paper_table(args.paper) if args.paper and args.paper.exists() else None
    analysis = analyse(rows, images, args.rates, args.methods, args.codecs, args.iterations, args.seed, paper,
                       parse_paper_time(args.paper) if paper else None)
    _report(args, argv, analysis, args.plots_dir or results.parent)
    return 1 if errors else 0


def _run(args: argparse.Namespace, images: list[ImageInfo], results: Path) -> tuple[dict[tuple, dict], list[dict]]:
    """Runs what the results file lacks; returns all its rows by key, and the failures of this run."""
    done = load_results(results)
    tasks = [] if args.report_only else plan_tasks(args, images, done)
    print(f"{len(images)} images, {len(args.rates)} rates; {len(tasks)} tasks to run "
          f"({sum(isinstance(t, OursTask) for t in tasks)} encodes of ours); results: {results}", file=sys.stderr)
    started = time.perf_counter()
    new_rows, errors = execute(tasks, results, args.jobs) if tasks else ([], [])
    print(f"ran {len(tasks)} tasks in {time.perf_counter() - started:.1f} s, {len(new_rows)} new rows, "
          f"{len(errors)} failures", file=sys.stderr)
    rows = load_results(results)
    for row in new_rows:  # the file is the record; this covers a results file that could not be read back
        rows.setdefault(row_key(row), row)
    return rows, errors


def _settings(args: argparse.Namespace, analysis: Analysis) -> list[str]:
    settings = [ours_setting(m, args.iterations, args.seed, args.device)
                for m in args.methods if "ours" in args.codecs]
    settings += [f"{CODECS[c].label}: {CODECS[c].description}; quality sweep up to the first point above "
                 f"{max(args.rates):g} bpp" for c in args.codecs if c != "ours"]
    if "paper" in analysis.series:
        settings.append(f"paper: Table 1 of Zhang et al., \"2D Gaussian Splatting for Image Compression\" "
                        f"(`{os.path.relpath(args.paper, REPO)}`), four points per image")
    return settings


def _report(args: argparse.Namespace, argv: list[str], analysis: Analysis, plots_dir: Path) -> None:
    """Writes the plots and the section of ``--benchmarks``, or with --no-write prints the section."""
    try:
        data_name = os.path.relpath(args.data, REPO)
    except ValueError:
        data_name = str(args.data)
    title = f"Rate–distortion on `{data_name}` ({args.section})"
    shown = [a for a in argv if a not in ("--report-only", "--no-write")]  # the run that made the rows
    command = "python -m bench.rd" + (" " + shlex.join(shown) if shown else "")

    benchmarks = args.benchmarks
    links: dict[str, str] = {}
    if not args.no_write:
        written = write_plots(analysis, plots_dir / f"{args.section}-rd.png", plots_dir / f"{args.section}-time.png")
        links = {name: Path(os.path.relpath(path, benchmarks.resolve().parent)).as_posix()
                 for name, path in written.items()}
    markdown = render_markdown(analysis, title=title, command=command, machine=machine_line(),
                               settings=_settings(args, analysis), plots=links)
    if args.no_write:
        print(markdown)
    else:
        write_section(args.section, markdown, benchmarks)
        print(f"wrote section {args.section!r} of {benchmarks}", file=sys.stderr)
