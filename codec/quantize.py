"""Vector quantisation (K-means) inside training and post-training uniform quantisation (paper eq. 7-8)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

LLOYD_ITERATIONS = 10


def kmeans(
    points: Tensor,  # [N, D]
    k: int,
    *,
    init: Tensor | None = None,  # [k, D] centroids to start from (e.g. the previous codebook)
    iterations: int = LLOYD_ITERATIONS,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:  # ([k, D] centroids, [N] int64 assignment)
    """Lloyd's algorithm, vectorised: distances by cdist, centroid sums by index_add.

    Starts from ``init`` or from k-means++-like distinct samples; an empty cluster is re-seeded with the
    point farthest from its centroid, so all k entries stay in use.
    """
    points = points.detach()
    n = points.shape[0]
    k = min(k, n)
    centroids = init.detach().clone() if init is not None else _initial_centroids(points, k, generator)
    for _ in range(iterations):
        assign = torch.cdist(points, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).to(points.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            distance = (points - centroids[assign]).norm(dim=1)
            farthest = distance.topk(int(empty.sum())).indices
            centroids[empty] = points[farthest]
    assign = torch.cdist(points, centroids).argmin(dim=1)
    return centroids, assign


def _initial_centroids(points: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    order = torch.randperm(points.shape[0], generator=generator, device="cpu").to(points.device)
    return points[order[:k]].clone()


def half_range(values: np.ndarray) -> np.ndarray:  # [D, 2] float16-representable (min, max) per column
    """Per-column (min, max), widened to the nearest float16 values so the stored range still covers them."""
    lo = values.min(axis=0).astype(np.float64)
    hi = values.max(axis=0).astype(np.float64)
    lo16, hi16 = lo.astype(np.float16), hi.astype(np.float16)
    lo16 = np.where(lo16.astype(np.float64) > lo, np.nextafter(lo16, np.float16(-np.inf)), lo16)
    hi16 = np.where(hi16.astype(np.float64) < hi, np.nextafter(hi16, np.float16(np.inf)), hi16)
    return np.stack([lo16, hi16], axis=1).astype(np.float32)


def quantize_uniform(
    values: np.ndarray,  # [M, D]
    ranges: np.ndarray,  # [D, 2] (min, max)
    bits: int,
) -> np.ndarray:  # [M, D] int64 in [0, 2^bits - 1]
    """Paper eq. 7: q = round((theta - min) / S), S = (max - min) / (2^b - 1)."""
    step = _steps(ranges, bits)
    levels = 2**bits - 1
    return np.clip(np.round((values - ranges[:, 0]) / step), 0, levels).astype(np.int64)


def dequantize_uniform(
    symbols: np.ndarray,  # [M, D] int
    ranges: np.ndarray,  # [D, 2]
    bits: int,
) -> np.ndarray:  # [M, D] float32
    """Paper eq. 8: theta = q * S + min."""
    return (symbols * _steps(ranges, bits) + ranges[:, 0]).astype(np.float32)


def _steps(ranges: np.ndarray, bits: int) -> np.ndarray:
    span = ranges[:, 1].astype(np.float64) - ranges[:, 0].astype(np.float64)
    return np.where(span > 0, span, 1.0) / (2**bits - 1)


def fake_quantize(
    values: Tensor,  # [M, D]
    ranges: np.ndarray,  # [D, 2]
    bits: int,
) -> Tensor:  # [M, D], forward quantised, backward identity (straight-through)
    lo = torch.as_tensor(ranges[:, 0], dtype=values.dtype, device=values.device)
    step = torch.as_tensor(_steps(ranges, bits), dtype=values.dtype, device=values.device)
    snapped = torch.round((values - lo) / step).clamp(0, 2**bits - 1) * step + lo
    return values + (snapped - values).detach()
