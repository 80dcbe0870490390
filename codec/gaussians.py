"""The 9-number Gaussian (position 2, two scales and a rotation 3, RGB 3, opacity 1) and its initialisation."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from codec.bitstream import QuantizedGaussians
from codec.quantize import dequantize_uniform


@dataclass
class Gaussians:
    """Trainable parameters; ``scales`` and ``opacities`` are derived through exp and sigmoid."""

    xy: Tensor  # [N, 2] pixels
    log_scale: Tensor  # [N, 2]
    rotation: Tensor  # [N] radians
    color: Tensor  # [N, 3]
    opacity_logit: Tensor  # [N]

    def tensors(self) -> list[Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    def select(self, index: Tensor) -> "Gaussians":
        return Gaussians(*(t[index] for t in self.tensors()))

    def __len__(self) -> int:
        return self.xy.shape[0]


def initialise(
    image: Tensor,  # [H, W, 3] in [0, 1]
    n: int,
    generator: torch.Generator,
    detail_share: float = 0.7,
) -> Gaussians:
    """Sample n points, denser where the image has detail; size each by its local point spacing.

    The sampling density mixes a detail term (local gradient magnitude, blurred) with a uniform floor, so
    flat areas still get a few broad Gaussians; colours are taken from the pixels under the points.
    """
    height, width, _ = image.shape
    density = _detail_density(image, detail_share)  # [H, W], sums to 1
    flat = torch.multinomial(density.flatten().cpu(), n, replacement=False, generator=generator)
    rows, cols = flat // width, flat % width
    jitter = torch.rand(n, 2, generator=generator)
    xy = torch.stack([cols, rows], dim=1).float() + jitter
    # A point in a region of density p has about 1 / (n p) pixels to itself.
    area = 1.0 / (n * density.flatten().cpu()[flat]).clamp(min=1e-12)
    sigma = (0.5 * area.sqrt()).clamp(0.5, max(height, width) / 4)
    device = image.device
    return Gaussians(
        xy=xy.to(device),
        log_scale=sigma.log()[:, None].repeat(1, 2).to(device),
        rotation=torch.zeros(n, device=device),
        color=image.reshape(-1, 3)[flat.to(device)].clone(),
        opacity_logit=torch.full((n,), 1.0, device=device),
    )


def _detail_density(image: Tensor, detail_share: float) -> Tensor:  # [H, W]
    gray = image.mean(dim=2)[None, None]
    gx = F.pad(gray[..., :, 1:] - gray[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(gray[..., 1:, :] - gray[..., :-1, :], (0, 0, 0, 1))
    magnitude = (gx.square() + gy.square()).sqrt()
    magnitude = F.avg_pool2d(magnitude, 5, stride=1, padding=2, count_include_pad=False)[0, 0]
    detail = magnitude / magnitude.sum().clamp(min=1e-12)
    uniform = torch.full_like(detail, 1.0 / detail.numel())
    return detail_share * detail + (1 - detail_share) * uniform


def log_covariance(
    log_scale: Tensor,  # [N, 2]
    rotation: Tensor,  # [N]
) -> Tensor:  # [N, 3] (xx, xy, yy) of log S = R diag(2 log s) R^T
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    l1, l2 = 2 * log_scale[:, 0], 2 * log_scale[:, 1]
    return torch.stack([cos * cos * l1 + sin * sin * l2, cos * sin * (l1 - l2), sin * sin * l1 + cos * cos * l2], 1)


def scales_and_rotation(log_cov: Tensor) -> tuple[Tensor, Tensor]:  # [N, 3] -> ([N, 2] scales, [N] rotation)
    """Inverse of ``log_covariance`` (closed-form eigen-decomposition of a symmetric 2 x 2 matrix)."""
    xx, xy, yy = log_cov.unbind(1)
    mean, half_diff = (xx + yy) / 2, (xx - yy) / 2
    radius = torch.sqrt(half_diff * half_diff + xy * xy + 1e-12)  # the epsilon keeps gradients finite when round
    scales = torch.stack([torch.exp((mean + radius) / 2), torch.exp((mean - radius) / 2)], 1)
    return scales, 0.5 * torch.atan2(2 * xy, xx - yy)


def position_step(extent: int, bits: int) -> float:
    """Grid step of a position axis: paper eq. 7 with min 0 and max the image side."""
    return extent / ((1 << bits) - 1)


def dequantize(
    q: QuantizedGaussians, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # means [N,2], scales [N,2], rotations [N], colors [N,3], opacities [N]
    """What the decoder renders: codebooks and positions back to floats, in file order."""
    xy = np.stack([q.x * position_step(q.width, q.position_bits), q.y * position_step(q.height, q.position_bits)], 1)
    shape = dequantize_uniform(q.shape_codebook, q.shape_ranges, q.shape_bits)[q.shape_index]
    color = dequantize_uniform(q.color_codebook, q.color_ranges, q.color_bits)[q.color_index]
    as_tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
    scales, rotation = scales_and_rotation(as_tensor(shape))
    return as_tensor(xy), scales, rotation, as_tensor(color[:, :3]), as_tensor(color[:, 3])
