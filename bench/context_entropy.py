"""Would context from already-decoded neighbours shrink the per-Gaussian columns? An offline estimate.

    python -m bench.context_entropy photo.gsi [more.gsi ...]

For each file (per-Gaussian shapes and colours, format v2) and each group, prints the bits per Gaussian of
its columns coded as today (each column under its own histogram), and coded as the residual against the
symbol of the nearest Gaussian decoded before it (file order), or against the rounded mean of the four
nearest decoded before it. Both are empirical entropies: a lower bound for either coder, before the larger
histograms residuals need. A context model is worth building only where the residual is clearly lower.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from codec.format.bitstream import read_bitstream
from codec.format.entropy import symbol_bits

NEIGHBOURS = 4
BLOCK = 1024  # rows of the distance matrix at a time


def earlier_neighbours(xy: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:  # [N, 2] -> [N, k], -1: none
    """The k nearest Gaussians with a smaller index, nearest first (what a decoder in file order has)."""
    points = torch.as_tensor(xy, dtype=torch.float64)
    n = len(points)
    found = np.full((n, k), -1, dtype=np.int64)
    for first in range(0, n, BLOCK):
        rows = torch.arange(first, min(first + BLOCK, n))
        distance = torch.cdist(points[rows], points)
        distance[torch.arange(n)[None, :] >= rows[:, None]] = float("inf")  # only earlier Gaussians
        nearest = distance.topk(min(k, n), largest=False)
        index = torch.where(nearest.values.isinf(), -1, nearest.indices).numpy()
        found[first:first + len(rows), :index.shape[1]] = index
    return found


def estimate(data: bytes) -> dict[str, tuple[float, float, float]]:
    """Per group: bits per Gaussian (own histogram, minus the nearest earlier, minus the mean of four)."""
    q = read_bitstream(data)
    if not (q.layout.shape_per_gaussian and q.layout.color_per_gaussian):
        raise SystemExit("needs a file with shapes and colours per Gaussian (format v2)")
    n = len(q)
    neighbours = earlier_neighbours(q.layout.grid.to_pixels(q.x, q.y))
    has = neighbours >= 0
    rows = {}
    for name, table in (("shapes", q.shape_codebook), ("colours", q.color_codebook[:, :3])):
        own = nearest = mean = 0.0
        for column in table.T.astype(np.int64):
            own += symbol_bits(column)
            nearest += symbol_bits(np.where(has[:, 0], column - column[np.maximum(neighbours[:, 0], 0)], column))
            picked = np.where(has, column[np.maximum(neighbours, 0)], 0)
            average = np.rint(picked.sum(1) / np.maximum(has.sum(1), 1)).astype(np.int64)
            mean += symbol_bits(np.where(has[:, 0], column - average, column))
        rows[name] = (own / n, nearest / n, mean / n)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.files:
        for name, (own, nearest, mean) in estimate(path.read_bytes()).items():
            print(f"{path.name} {name}: {own:.2f} bits per Gaussian on their own histograms, {nearest:.2f} minus "
                  f"the nearest earlier, {mean:.2f} minus the mean of the {NEIGHBOURS} nearest earlier")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
