"""Adaptive density control while fitting: prune transparent Gaussians, grow (clone or split) where the
positional gradient is largest, and the optimiser-state surgery both need.

A strategy object in the spirit of gsplat's: the encoder reports each step's gradients and asks, at each
round, to densify toward a count that rate control measured; the surgery (``select``) is shared with the
rate-driven pruning of the quantised phase.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from codec.train.gaussians import Gaussians
from codec.train.method import DensityConfig


def select(
    gaussians: Gaussians,
    optimizer: torch.optim.Optimizer,  # one param group per Gaussians tensor, in field order
    index: Tensor,  # [M] int64, repeats allowed
    edits: dict[str, Tensor] | None = None,  # field name -> [M, ...] values to write into the kept set
) -> Gaussians:
    """Keep Gaussians ``index``, carrying each one's Adam moments along; the optimiser then trains the new set."""
    new = Gaussians(*(t.detach()[index].clone() for t in gaussians.tensors()))
    for name, value in (edits or {}).items():
        getattr(new, name).data.copy_(value)
    for group, tensor in zip(optimizer.param_groups, new.tensors()):
        previous = group["params"][0]
        state = optimizer.state.pop(previous, None)
        tensor.requires_grad_(True)
        group["params"] = [tensor]
        if state:
            optimizer.state[tensor] = {key: (value[index].clone() if torch.is_tensor(value) and value.dim() else value)
                                       for key, value in state.items()}
    return new


def importance_order(
    shape: Tensor,  # [N, 3] log covariance as the decoder sees it
    color: Tensor,  # [N, 4] colour and opacity as the decoder sees them
    blend_mode: str,
    keep: int,
) -> Tensor:  # [keep] indices of the most important Gaussians, in their current order
    """Alpha blending: opacity times area. Accumulated blending: the energy a Gaussian adds to the image,
    |colour x opacity|^2 times area, since opacity times area alone drops small bright or negative-colour
    Gaussians that carry detail."""
    area = (0.5 * (shape[:, 0] + shape[:, 2])).exp()
    if blend_mode == "sum":
        importance = (color[:, :3] * color[:, 3:]).square().sum(1) * area
    else:
        importance = color[:, 3] * area
    return importance.topk(keep).indices.sort().values


class DensityControl:
    """Clone, split and prune at each density round of the fit phase (when: ``Schedule``'s to say)."""

    def __init__(self, config: DensityConfig, generator: torch.Generator):
        self.config, self.generator = config, generator
        self._grad_sum: Tensor | None = None
        self._since = 0

    def observe(self, gaussians: Gaussians) -> None:
        """Accumulate the positional gradient of the step just taken."""
        norm = gaussians.xy.grad.norm(dim=1)
        self._grad_sum = norm if self._grad_sum is None else self._grad_sum + norm
        self._since += 1

    def densify(self, gaussians: Gaussians, optimizer: torch.optim.Optimizer,
                count_that_fits: Callable[[Gaussians], int]) -> Gaussians:
        """Prune transparent Gaussians, then grow the most-pulled ones, ``max_growth`` of the count at
        most, up to the count that ``count_that_fits`` says the pruned set's real stream allows."""
        mean_grad = self._grad_sum / self._since
        self._grad_sum, self._since = None, 0
        keep = torch.sigmoid(gaussians.opacity_logit.detach()) >= self.config.prune_opacity
        index = keep.nonzero().squeeze(1)
        pruned = select(gaussians, optimizer, index)
        target, n = count_that_fits(pruned), len(index)
        count = min(target - n, int(n * self.config.max_growth))
        if count <= 0:  # grow only where the budget has room
            return pruned
        return self._grow(pruned, optimizer, torch.arange(n, device=index.device), mean_grad[index], count)

    def _grow(self, g: Gaussians, optimizer: torch.optim.Optimizer, kept: Tensor, mean_grad: Tensor,
              count: int) -> Gaussians:
        """Split large chosen Gaussians in two (shrunk by ``split_shrink``), clone small ones along their
        gradient; the chosen are the ``count`` with the largest positional gradient."""
        chosen = kept[mean_grad[kept].topk(min(count, len(kept))).indices]
        max_scale = g.log_scale.detach().exp().max(dim=1).values
        large = max_scale[chosen] > max_scale[kept].median()
        xy, log_scale = g.xy.detach().clone(), g.log_scale.detach().clone()
        scales, rotation = log_scale.exp(), g.rotation.detach()
        offset = torch.randn(len(chosen), 2, generator=self.generator).to(xy.device) * scales[chosen]
        cos, sin = torch.cos(rotation[chosen]), torch.sin(rotation[chosen])
        offset = torch.stack([cos * offset[:, 0] - sin * offset[:, 1], sin * offset[:, 0] + cos * offset[:, 1]], 1)
        # Right after a reorder no gradient is at hand: clones then move by the random offset instead.
        direction = -g.xy.grad[chosen] if g.xy.grad is not None else offset
        along_gradient = direction / direction.norm(dim=1, keepdim=True).clamp(min=1e-12) * scales[chosen].mean(1, keepdim=True)
        child_xy = torch.where(large[:, None], xy[chosen] + offset, xy[chosen] + along_gradient)
        xy[chosen] = torch.where(large[:, None], xy[chosen] - offset, xy[chosen])
        log_scale[chosen] -= large[:, None].float() * math.log(self.config.split_shrink)
        index = torch.cat([kept, chosen])
        return select(g, optimizer, index, {"xy": torch.cat([xy[kept], child_xy]), "log_scale": log_scale[index]})
