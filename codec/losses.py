"""Training loss: L1 + SSIM as in the paper, SSIM written as separable convolutions.

``ssim`` computes exactly pytorch_msssim.ssim's formula (11-tap Gaussian window, sigma 1.5, valid
convolution, K1 = 0.01, K2 = 0.03); the tests hold it to that package. Doing the 5 blurs as two grouped
1-D convolutions makes forward + backward several times cheaper than the 2-D path on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def ssim(
    x: Tensor,  # [B, C, H, W] in [0, data_range]
    y: Tensor,  # [B, C, H, W]
    data_range: float = 1.0,
) -> Tensor:  # [] mean SSIM
    channels = x.shape[1]
    taps = torch.arange(WINDOW, dtype=x.dtype, device=x.device) - WINDOW // 2
    kernel = torch.exp(-(taps**2) / (2 * SIGMA**2))
    kernel = kernel / kernel.sum()
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 5C, H, W]
    groups = 5 * channels
    blurred = F.conv2d(stack, kernel.view(1, 1, 1, -1).expand(groups, 1, 1, WINDOW), groups=groups)
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(groups, 1, WINDOW, 1), groups=groups)
    mu_x, mu_y, xx, yy, xy = blurred.split(channels, dim=1)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    sigma_x, sigma_y, sigma_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    contrast = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * contrast).mean()


def l1_ssim_loss(
    rendered: Tensor,  # [H, W, 3]
    target: Tensor,  # [H, W, 3]
    ssim_weight: float,
) -> Tensor:
    l1 = (rendered - target).abs().mean()
    if ssim_weight == 0 or min(target.shape[:2]) < WINDOW:
        return l1
    as_batch = lambda t: t.permute(2, 0, 1)[None]  # noqa: E731
    return (1 - ssim_weight) * l1 + ssim_weight * (1 - ssim(as_batch(rendered), as_batch(target)))
