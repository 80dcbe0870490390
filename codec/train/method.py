"""Encoder methods: a ``Method`` is a name and seven small typed parts, one per concern of the encoder.

The dataclass defaults are the default method's; ``METHODS["paper"]`` spells out where the paper's configuration
differs. Why each default is what it is: ``docs/method.md``. Imports nothing heavy: options and the CLI read it
without the trainer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from codec.format.bitstream import MAX_SCALAR_BITS
from codec.format.texture import MAX_HIDDEN, MAX_LEVELS
from codec.format.values import BLEND_MODES

Distortion = Literal["l1", "rmse"]  # the per-pixel error terms of codec.train.losses
DISTORTIONS = get_args(Distortion)
# Ordered alpha blending (the paper's), or an order-free accumulated sum: the file's BLEND_MODES, spelled out
# for the type checker.
BlendMode = Literal["alpha", "sum"]


def _check_share(part: object, *names: str) -> None:
    for name in names:
        if not 0 <= getattr(part, name) <= 1:
            raise ValueError(f"{name} must be within [0, 1], not {getattr(part, name)!r}")


@dataclass(frozen=True)
class Schedule:
    """The phases, as shares of an encode's steps; ``over`` lays them over a given step count."""

    iterations: int = 1800  # total optimisation steps, unless the encode asks for another count
    coarse_share: float = 0.6  # first steps fitted at half resolution (coarse to fine)
    fit_share: float = 0.6  # steps before quantisation starts
    densify_until: float = 0.5  # share of steps during which density control runs
    densify_rounds: int = 5  # evenly spaced over the densification window
    # Share of the quantised steps after which the stream is measured once more: the remaining steps heal a
    # prune there, which at the final write costs the image much more.
    remeasure_at: float = 0.75
    # Denser sets want more steps (docs/method.md): above this many planned Gaussians per megapixel the steps grow
    # in proportion, to at most max_step_scale times ``iterations``; 0: always ``iterations``.
    scale_from_density: float = 5600.0
    max_step_scale: float = 2.0

    def __post_init__(self) -> None:
        _check_share(self, "coarse_share", "fit_share", "densify_until", "remeasure_at")
        if self.iterations < 1 or self.densify_rounds < 0:
            raise ValueError(f"iterations must be >= 1 and densify_rounds >= 0, not {self.iterations}, "
                             f"{self.densify_rounds}")
        if self.scale_from_density < 0 or self.max_step_scale < 1:
            raise ValueError(f"scale_from_density must be >= 0 and max_step_scale >= 1, not "
                             f"{self.scale_from_density}, {self.max_step_scale}")

    def steps_for(self, n_gaussians: int, pixels: int) -> int:
        """The step count for a planned set of ``n_gaussians`` over ``pixels``."""
        if not self.scale_from_density:
            return self.iterations
        density = n_gaussians * 1e6 / pixels
        return round(self.iterations * min(self.max_step_scale, max(1.0, density / self.scale_from_density)))

    def over(self, total: int) -> StepPlan:
        return StepPlan(self, total)


class StepPlan:
    """A ``Schedule`` over one encode's ``total`` steps: which phase, resolution and round each step is."""

    def __init__(self, schedule: Schedule, total: int):
        self.total = total
        self.fit_steps = max(1, int(schedule.fit_share * total))  # steps 0 .. fit_steps - 1 fit; the rest are quantised
        self._coarse_until = schedule.coarse_share * total
        rounds = schedule.densify_rounds
        self._density_rounds = {round(schedule.densify_until * total * (i + 1) / rounds) for i in range(rounds)}
        self.remeasure_step = self.fit_steps + int((total - self.fit_steps) * schedule.remeasure_at)

    def is_coarse(self, step: int) -> bool:  # fitted at half resolution
        return step < self._coarse_until

    def is_density_round(self, step: int) -> bool:  # density control runs after step ``step`` (0-based)
        return step + 1 in self._density_rounds and step + 1 < self.fit_steps

    def remeasures(self, step: int) -> bool:  # the stream is measured once more before quantised step ``step``
        return step == self.remeasure_step and step > self.fit_steps


@dataclass(frozen=True)
class LossConfig:
    """loss = (1 - ssim_weight) distortion + ssim_weight (1 - SSIM) + rate_weight R."""

    # The per-pixel error term: "l1", the paper's, or "rmse", the root of the mean squared error, whose gradient
    # is MSE's (PSNR's own) at L1's scale.
    distortion: Distortion = "rmse"
    ssim_weight: float = 0.0
    # Weight of the rate term (codec.train.rate_model: bits per pixel of the per-Gaussian columns), in units of
    # the distortion term per bit per pixel at 0.125 bpp (codec.train.rate_model.weight_at scales it to the
    # target); 0: none.
    rate_weight: float = 0.003

    def __post_init__(self) -> None:
        if self.distortion not in DISTORTIONS:
            raise ValueError(f"distortion must be one of {DISTORTIONS}, not {self.distortion!r}")
        _check_share(self, "ssim_weight")
        if self.rate_weight < 0:
            raise ValueError(f"rate_weight must be >= 0, not {self.rate_weight!r}")


@dataclass(frozen=True)
class OptimiserConfig:
    """Adam's learning rate per Gaussian tensor, and their exponential decay over the whole encode."""

    lr_xy: float = 0.2  # pixels per step at the start
    lr_log_scale: float = 0.02
    lr_rotation: float = 0.02
    lr_color: float = 0.01
    lr_opacity: float = 0.05
    position_lr_decay: float = 0.01  # the final rate's share of the first, for positions
    lr_decay: float = 0.1  # likewise for every other tensor


@dataclass(frozen=True)
class InitConfig:
    """Where the first Gaussians go (``codec.train.gaussians.initialise``)."""

    initial_share: float = 0.8  # Gaussians initialised, as a share of the planned count; densification adds the rest
    detail_share: float = 0.7  # of the sampling density that follows image detail (the rest is uniform)

    def __post_init__(self) -> None:
        _check_share(self, "initial_share", "detail_share")


@dataclass(frozen=True)
class DensityConfig:
    """What a round of density control (``codec.train.density``) does; when rounds run is the ``Schedule``'s."""

    prune_opacity: float = 0.001  # Gaussians below this opacity are pruned at each round
    max_growth: float = 0.25  # at most this share of the count is grown per round
    split_shrink: float = 1.6  # split Gaussians shrink by this factor


@dataclass(frozen=True)
class FormatConfig:
    """What the file codes and how: the blending, each attribute group's form and bits, the models, the background."""

    blend_mode: BlendMode = "sum"
    shape_per_gaussian: bool = True  # scalar-quantised shape per Gaussian instead of a K-means codebook
    color_per_gaussian: bool = True  # likewise for colour and opacity (format version 2)
    position_bits: int = 10
    shape_bits: int = 7  # of each per-Gaussian column (a codebook's entries have 8)
    color_bits: int = 6
    gaussians_per_entry: int = 16  # of a codebook (its size is the power of two nearest N / this)
    # Let each coded column take a two-sided geometric model where it beats its histogram (format version 3).
    parametric_models: bool = True
    # Accumulated blending only: every pixel starts from the image's mean colour (three bytes, format version 4),
    # and the Gaussians, initialised to their pixels minus it, draw what differs from it.
    background: bool = True

    def __post_init__(self) -> None:
        if self.blend_mode not in BLEND_MODES:
            raise ValueError(f"blend_mode must be one of {BLEND_MODES}, not {self.blend_mode!r}")
        for name in ("shape_bits", "color_bits"):
            if not 1 <= getattr(self, name) <= MAX_SCALAR_BITS:
                raise ValueError(f"{name} must be 1 to {MAX_SCALAR_BITS}, not {getattr(self, name)}")
        if self.background and self.blend_mode != "sum":
            raise ValueError("a background needs accumulated blending (blend_mode='sum')")


@dataclass(frozen=True)
class TextureConfig:
    """The texture layer (``codec.train.texture``): where it is used, its form and its training."""

    from_bpp: float = 0.5  # targets below this are Gaussians only (format version 4); inf: never
    # Smaller pictures are Gaussians only too: the network's weights would take too large a share of the bits.
    min_pixels: int = 1 << 16
    gaussian_share: float = 1 / 3  # of the target's bits planned for the Gaussians; the layer fills the rest
    levels: int = 7  # latent grids, from the picture's resolution down to 1 / 2^(levels - 1)
    hidden: int = 16  # the synthesis network's width
    steps: int = 800
    latent_lr: float = 0.02  # Adam's, for the latents and their spreads, falling on a cosine
    network_lr: float = 0.02  # the synthesis network's
    rate_weight: float = 0.002  # lambda's start (MSE per bit per pixel); steered to fill the layer's budget

    def __post_init__(self) -> None:
        _check_share(self, "gaussian_share")
        if not (1 <= self.levels <= MAX_LEVELS and 1 <= self.hidden <= MAX_HIDDEN and self.steps >= 1):
            raise ValueError(f"levels must be 1 to {MAX_LEVELS}, hidden 1 to {MAX_HIDDEN} and steps >= 1, not "
                             f"{self.levels}, {self.hidden}, {self.steps}")

    def applies(self, target_bpp: float, height: int, width: int) -> bool:
        return target_bpp >= self.from_bpp and height * width >= self.min_pixels


@dataclass(frozen=True)
class Method:
    """How the encoder trains and quantises; rate control picks counts and bit-widths within it."""

    name: str
    schedule: Schedule = field(default_factory=Schedule)
    loss: LossConfig = field(default_factory=LossConfig)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    init: InitConfig = field(default_factory=InitConfig)
    density: DensityConfig = field(default_factory=DensityConfig)
    format: FormatConfig = field(default_factory=FormatConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)

    def __post_init__(self) -> None:
        if self.loss.rate_weight and not (self.format.shape_per_gaussian and self.format.color_per_gaussian):
            raise ValueError("rate_weight needs shapes and colours both coded per Gaussian")

    def replace(self, **changes: object) -> Method:
        """A copy with ``changes``: a field of the method by its name (``name="mine"``), a field of a part as
        ``"part.field"`` (``**{"format.shape_bits": 5}``)."""
        top: dict[str, object] = {}
        parts: dict[str, dict[str, object]] = {}
        for key, value in changes.items():
            part, dot, name = key.partition(".")
            if dot:
                parts.setdefault(part, {})[name] = value
            else:
                top[key] = value
        for part, part_changes in parts.items():
            if part in top or part not in PARTS:
                raise ValueError(f"{part!r} is not one of the parts {PARTS}, or is also replaced whole")
            top[part] = dataclasses.replace(getattr(self, part), **part_changes)
        return dataclasses.replace(self, **top)


PARTS = tuple(f.name for f in dataclasses.fields(Method) if f.name != "name")

METHODS = {
    "default": Method("default"),
    # The paper's configuration: ordered alpha blending, L1 + SSIM, K-means VQ of both groups, 10-bit positions in
    # index order, 1200 steps at every rate, all at full resolution.
    "paper": Method(
        "paper",
        schedule=Schedule(iterations=1200, coarse_share=0.0, fit_share=0.7, scale_from_density=0.0),
        loss=LossConfig(distortion="l1", ssim_weight=0.2, rate_weight=0.0),
        format=FormatConfig(blend_mode="alpha", shape_per_gaussian=False, color_per_gaussian=False,
                            parametric_models=False, background=False),
        texture=TextureConfig(from_bpp=math.inf),
    ),
}
