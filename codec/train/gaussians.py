"""The trainable 9-number Gaussian (position 2, two scales and a rotation 3, RGB 3, opacity 1) and its initialisation."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor


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

    def __len__(self) -> int:
        return self.xy.shape[0]


def initialise(
    image: Tensor,  # [H, W, 3] in [0, 1]
    n: int,
    generator: torch.Generator,
    detail_share: float,  # of the sampling density that follows image detail; the rest is uniform
    background: Tensor | None = None,  # [3] the colour the render starts from, if not black
) -> Gaussians:
    """Sample n points, denser where the image has detail; size each by its local point spacing.

    The sampling density mixes a detail term (local gradient magnitude, blurred) with a uniform floor, so
    flat areas still get a few broad Gaussians; colours are taken from the pixels under the points, less
    the background they are drawn over.
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
        color=image.reshape(-1, 3)[flat.to(device)] - (0 if background is None else background),
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
