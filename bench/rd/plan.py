"""What a run has to do: the images, one task per encode or sweep, and the keys of finished rows."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from bench.baselines import CODECS, sweep_complete

IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageInfo:
    name: str
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class OursTask:
    image: str
    path: str
    method: str
    rate: float
    iterations: int | None
    seed: int
    device: str | None
    save_dir: str | None

    def describe(self) -> str:
        return f"{self.image} {self.method} @{self.rate:g}"


@dataclass(frozen=True)
class SweepTask:
    image: str
    path: str
    codec: str
    max_rate: float
    done: dict = field(default_factory=dict)  # quality -> row already in the results

    def describe(self) -> str:
        return f"{self.image} {self.codec}"


def ours_key(image: str, size: tuple[int, int], method: str, iterations: int | None, seed: int,
             rate: float) -> tuple:
    """The key of one encode of ours: a rerun with the same settings finds it and skips the encode."""
    return ("ours", image, size, method, iterations, seed, round(float(rate), 6))


def row_key(row: dict) -> tuple:
    size = (row["width"], row["height"])
    if row["codec"] == "ours":
        return ours_key(row["image"], size, row["method"], row.get("iterations"), row.get("seed", 0),
                        row["target_bpp"])
    return (row["codec"], row["image"], size, row["quality"])


def find_images(folder: Path, names: list[str] | None) -> list[ImageInfo]:
    from PIL import Image

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if names:
        by_name = {p.stem: p for p in paths}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise SystemExit(f"no image {', '.join(missing)} in {folder}")
        paths = [by_name[n] for n in names]
    if not paths:
        raise SystemExit(f"no images in {folder}")
    images = []
    for p in paths:
        with Image.open(p) as im:
            width, height = im.size  # EXIF orientation is not used by Kodak or the fixtures
        images.append(ImageInfo(p.stem, p, width, height))
    return images


def plan_tasks(args: argparse.Namespace, images: list[ImageInfo],
               done: dict[tuple, dict]) -> list[OursTask | SweepTask]:
    """The tasks whose rows are not in ``done`` yet: the baseline sweeps first, then our encodes."""
    return _sweep_tasks(args, images, done) + _ours_tasks(args, images, done)


def _sweep_tasks(args: argparse.Namespace, images: list[ImageInfo], done: dict[tuple, dict]) -> list[SweepTask]:
    tasks = []
    max_rate = max(args.rates)
    for codec in args.codecs:
        if codec == "ours":
            continue
        for im in images:
            have = {row["quality"]: row for key, row in done.items()
                    if key[0] == codec and key[1] == im.name and key[2] == (im.width, im.height)}
            if not sweep_complete(CODECS[codec], have, max_rate):
                tasks.append(SweepTask(im.name, str(im.path), codec, max_rate, have))
    return tasks


def _ours_tasks(args: argparse.Namespace, images: list[ImageInfo], done: dict[tuple, dict]) -> list[OursTask]:
    if "ours" not in args.codecs:
        return []
    save_dir = str(args.save_bitstreams) if args.save_bitstreams else None
    tasks = []
    for im in images:
        for method in args.methods:
            for rate in args.rates:
                key = ours_key(im.name, (im.width, im.height), method, args.iterations, args.seed, rate)
                if key not in done:
                    tasks.append(OursTask(im.name, str(im.path), method, rate, args.iterations, args.seed,
                                          args.device, save_dir))
    return tasks
