"""The trainable texture layer: latent grids and a synthesis network fitted, under D + lambda R, to what the
Gaussians leave of the image (the decode side, which this trains through: ``codec.decode.texture``).

Latents are quantised with uniform noise first, then rounded straight-through (the rounding the file applies),
the learning rates falling on a cosine throughout; their rate is a Laplace per level with a trained spread,
which the file's fitted integer models (``codec.format.entropy.write_model``) only undercut. Lambda is steered
so the layer's measured rate fills its budget, until the steps left are too slow to answer it; the network's
weights are then put on power-of-two grids chosen by the same D + lambda R. A section still over the budget
gets a few more steps under a heavier rate term, and as a last resort its latents are rounded toward zero (the
smallest dead zone that fits).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from codec.decode.texture import synthesise
from codec.format.texture import LATENT_BOUND, MAX_EXPONENT, MAX_WEIGHT, Texture, layer_shapes, level_shape
from codec.format.texture import weight_bits, write_texture
from codec.train.method import TextureConfig

# Lambda's start holds for a layer of up to this many bits per pixel; above, it starts lower by the ratio cubed: from
# the one start the latents grew too slowly under the steering's bounded steps to fill a larger budget
START_BPP = 0.4
STEER_EVERY = 25  # steps between updates of lambda toward the layer's budget, from STEER_FROM on
STEER_FROM = 100  # before, the latents are still growing from zero: their rate says little
STEER_STEP = 1.5  # the most lambda moves per update, either way
# of the steps, the share after which lambda stays put: with the learning rate low the rate answers a change of
# lambda too late, and steering on would wind lambda up and leave the section well short of its budget
STEER_UNTIL = 0.8
NOISE_SHARE = 0.8  # of the steps trained with noise; the rest straight-through
LR_FLOOR = 0.02  # the cosine's end, as a share of the starting learning rates
STEER_EXPONENT = 10  # the weights' grid while steering (the write chooses each layer's)
FIT_ROUNDS = 4  # at the end, rounds of FIT_STEPS more steps under a rate term FIT_PUSH times heavier at least
FIT_STEPS = 10
FIT_PUSH = 1.3
MAX_DEAD_ZONE = 2.0  # |latent| below a dead zone rounds to 0: the write's last resort when the section overshoots
DEAD_ZONE_ROUNDS = 8


class TextureModel(torch.nn.Module):
    def __init__(self, height: int, width: int, config: TextureConfig, generator: torch.Generator,
                 device: torch.device):
        super().__init__()
        self.height, self.width = height, width
        shapes = [level_shape(height, width, level) for level in range(config.levels)]
        self.latents = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(shape, device=device))
                                               for shape in shapes])
        self.log_spreads = torch.nn.Parameter(torch.zeros(config.levels, device=device))  # Laplace, per level
        # the quantisation noise from the encode's seed, on the device: the same seed, the same file
        seed = int(torch.randint(1 << 62, (1,), generator=generator))
        self._noise = torch.Generator(device=device).manual_seed(seed)
        self.weights = torch.nn.ParameterList()
        for inputs, outputs in layer_shapes(config.levels, config.hidden):
            bound = 1 / math.sqrt(inputs)  # torch.nn.Linear's initialisation, from the encode's own generator
            values = (torch.rand((inputs + 1, outputs), generator=generator) * 2 - 1) * bound
            self.weights.append(torch.nn.Parameter(values.to(device)))

    def layers(self) -> list[tuple[Tensor, Tensor]]:  # (W^T [out, in], b [out]) per layer, as the decoder's
        return [(w[:-1].T, w[-1]) for w in self.weights]

    def residual(self, latents: list[Tensor], layers: list[tuple[Tensor, Tensor]]) -> Tensor:  # [H, W, 3]
        """``codec.decode.texture``'s residual at the picture's own pixels: torch's bilinear upsampling by 2^l
        places the samples where ``Taps`` does (a test holds the two equal), and trains faster than gathers."""
        height, width = self.height, self.width
        features = torch.stack([latents[0]] + [
            F.interpolate(z[None, None], scale_factor=1 << level, mode="bilinear", align_corners=False,
                          recompute_scale_factor=False)[0, 0, :height, :width]
            for level, z in enumerate(latents) if level])
        return synthesise(features.reshape(len(latents), -1), layers).T.reshape(height, width, 3)

    def quantised_latents(self, noisy: bool) -> list[Tensor]:
        out = []
        for z in self.latents:
            z = z.clamp(-LATENT_BOUND, LATENT_BOUND)
            if noisy:
                out.append(z + torch.rand(z.shape, generator=self._noise, device=z.device) - 0.5)
            else:
                out.append(z + (torch.round(z) - z).detach())
        return out

    def latent_bits(self, latents: list[Tensor]) -> Tensor:  # [] under each level's Laplace
        bits = torch.zeros((), device=latents[0].device)
        for z, log_spread in zip(latents, self.log_spreads):
            spread = log_spread.exp().clamp_min(1e-2)
            mass = _laplace_cdf(z + 0.5, spread) - _laplace_cdf(z - 0.5, spread)
            bits = bits + (-torch.log2(mass.clamp_min(2.0 ** -24))).sum()
        return bits


def fit_texture(target: Tensor, base: Tensor, budget_bits: float, config: TextureConfig, steps: int,
                generator: torch.Generator, on_step: Callable[[int, Tensor], None] | None = None) -> bytes | None:
    """A texture section for ``target`` [H, W, 3] over the Gaussians' decoded ``base`` [H, W, 3] within
    ``budget_bits``, or None when none fits. ``on_step(step, image)`` after each step (progress)."""
    height, width = target.shape[:2]
    pixels = height * width
    model = TextureModel(height, width, config, generator, target.device)
    optimizer = torch.optim.Adam([{"params": [*model.latents, model.log_spreads], "lr": config.latent_lr},
                                  {"params": list(model.weights), "lr": config.network_lr}])
    start_lrs = [group["lr"] for group in optimizer.param_groups]
    rate_weight = config.rate_weight * min(1.0, START_BPP * pixels / budget_bits) ** 3
    noise_steps = int(NOISE_SHARE * steps)

    def train(noisy: bool) -> Tensor:  # one Adam step; the image it drew
        latents = model.quantised_latents(noisy)
        image = base + model.residual(latents, model.layers())
        loss = (image - target).square().mean() + rate_weight * model.latent_bits(latents) / pixels
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return image.detach()

    for step in range(steps):
        fall = LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group, start_lr in zip(optimizer.param_groups, start_lrs):
            group["lr"] = start_lr * fall
        image = train(noisy=step < noise_steps)
        if STEER_FROM <= step < STEER_UNTIL * steps and step % STEER_EVERY == 0:  # the section as written now
            measured = 8 * len(write_texture(_integers(model, [STEER_EXPONENT] * len(model.weights))))
            # for the whole budget: the weights' grids land it a little under; the fit rounds (or a dead zone)
            # mend an overshoot
            rate_weight *= min(STEER_STEP, max(1 / STEER_STEP, (measured / budget_bits) ** 1.5))
        if on_step is not None:
            on_step(step, image)
    # Over the budget at the end: a few more straight-through steps under a heavier rate term each round (the
    # latents that rounding flips back and forth settle at 0 one by one), then, as a last resort, a dead zone.
    for _ in range(FIT_ROUNDS):
        with torch.no_grad():
            section = write_texture(_integers(model, _exponents(model, target, base, rate_weight)))
        if len(section) * 8 <= budget_bits:
            return section
        rate_weight *= max(FIT_PUSH, (len(section) * 8 / budget_bits) ** 2)
        for _ in range(FIT_STEPS):
            train(noisy=False)
    with torch.no_grad():
        return _dead_zone(model, _exponents(model, target, base, rate_weight), budget_bits)


def _exponents(model: TextureModel, target: Tensor, base: Tensor, rate_weight: float) -> list[int]:
    """Each layer's power-of-two grid: the one that costs least in D + lambda R, layer by layer, the earlier
    ones on theirs, over the latents as the file rounds them."""
    pixels = target.shape[0] * target.shape[1]
    rounded = [_rounded(z) for z in model.latents]
    chosen: list[tuple[Tensor, int]] = []  # (values on their grid, exponent) per layer, in order
    for index in range(len(model.weights)):
        best = None
        for exponent in range(4, MAX_EXPONENT + 1):
            ints = _on_grid(model.weights[index], exponent)
            trial = [v for v, _ in chosen] + [ints * 2.0 ** -exponent] + list(model.weights[index + 1:])
            error = (base + model.residual(rounded, [(w[:-1].T, w[-1]) for w in trial]) - target).square().mean()
            cost = float(error) + rate_weight * weight_bits(ints.cpu().numpy()) / pixels
            if best is None or cost < best[0]:
                best = (cost, ints * 2.0 ** -exponent, exponent)
        chosen.append((best[1], best[2]))
    return [e for _, e in chosen]


def _dead_zone(model: TextureModel, exponents: list[int], budget_bits: float) -> bytes | None:
    """The section with the smallest dead zone that fits, by bisection (it shrinks as the zone grows)."""
    low, high, fitting = 0.5, MAX_DEAD_ZONE, None
    for _ in range(DEAD_ZONE_ROUNDS):
        middle = (low + high) / 2
        trial = write_texture(_integers(model, exponents, middle))
        if len(trial) * 8 <= budget_bits:
            high, fitting = middle, trial
        else:
            low = middle
    return fitting


@torch.no_grad()
def _integers(model: TextureModel, exponents: list[int], dead_zone: float = 0.5) -> Texture:
    """The model as a file holds it: weights on their grids, latents rounded (|latent| under ``dead_zone``
    to 0)."""
    latents = tuple(_rounded(z, dead_zone).cpu().numpy().astype(np.int32) for z in model.latents)
    weights = tuple(_on_grid(w, e).cpu().numpy().astype(np.int32) for w, e in zip(model.weights, exponents))
    return Texture(latents=latents, weights=weights, exponents=tuple(exponents))


def _rounded(z: Tensor, dead_zone: float = 0.5) -> Tensor:  # to the integers the file holds, |z| < dead_zone to 0
    return torch.sign(z) * torch.floor(z.abs() + 1 - dead_zone).clamp(0, LATENT_BOUND)


def _on_grid(weights: Tensor, exponent: int) -> Tensor:  # the integers of weights on the grid 2^-exponent
    return torch.round(weights * 2.0 ** exponent).clamp(-MAX_WEIGHT, MAX_WEIGHT)


def _laplace_cdf(x: Tensor, spread: Tensor) -> Tensor:
    return 0.5 - 0.5 * torch.sign(x) * torch.expm1(-x.abs() / spread)
