"""Training loss: a distortion term (L1 as in the paper, or RMSE) plus SSIM as in the paper, SSIM written as
separable convolutions.

``ssim`` computes exactly pytorch_msssim.ssim's formula (11-tap Gaussian window, sigma 1.5, valid
convolution, K1 = 0.01, K2 = 0.03); the tests hold it to that package. Doing the 5 blurs as two grouped
1-D convolutions makes forward + backward several times cheaper than the 2-D path on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from codec.train.method import DISTORTIONS, Distortion

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


# RMSE's gradient is error / (pixels * RMSE): unbounded as the error vanishes, so the root is held off zero.
MIN_MEAN_SQUARE = 1e-12
_DISTORTION_TERMS = {  # name -> scalar of the error [H, W, 3]
    "l1": lambda error: error.abs().mean(),
    "rmse": lambda error: error.square().mean().clamp(min=MIN_MEAN_SQUARE).sqrt(),
}


def training_loss(
    rendered: Tensor,  # [H, W, 3]
    target: Tensor,  # [H, W, 3]
    distortion: Distortion,
    ssim_weight: float,
) -> Tensor:  # [] (1 - w) distortion + w (1 - SSIM)
    """RMSE ranks renders as PSNR does and moves each pixel in proportion to its error, where L1 pulls
    every pixel alike; its size is that of L1 (an error's magnitude, not its square), so a rate weight set
    against one is about right for the other."""
    term = _DISTORTION_TERMS.get(distortion)
    if term is None:
        raise ValueError(f"distortion must be one of {DISTORTIONS}, not {distortion!r}")
    loss = term(rendered - target)
    if ssim_weight == 0 or min(target.shape[:2]) < WINDOW:
        return loss
    as_batch = lambda t: t.permute(2, 0, 1)[None]  # noqa: E731
    return (1 - ssim_weight) * loss + ssim_weight * (1 - ssim(as_batch(rendered), as_batch(target)))
