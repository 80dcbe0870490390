"""Encoder methods, as typed dataclasses. Imports nothing heavy: options and the CLI read it without the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from codec.format.bitstream import MAX_SCALAR_BITS

Distortion = Literal["l1", "rmse"]  # the per-pixel error terms of codec.train.losses
DISTORTIONS = get_args(Distortion)


@dataclass(frozen=True)
class Method:
    """How the encoder trains and quantises; rate control picks counts and bit-widths within it."""

    name: str
    blend_mode: str  # "alpha" (ordered blending, the paper) or "sum" (accumulated, order-free)
    shape_per_gaussian: bool = False  # scalar-quantised shape per Gaussian instead of a K-means codebook
    color_per_gaussian: bool = False  # likewise for colour and opacity (format version 2)
    iterations: int = 1200  # total optimisation steps at full resolution
    coarse_share: float = 0.0  # first steps fitted at half resolution (coarse to fine)
    fit_share: float = 0.7  # steps before vector quantisation starts
    densify_until: float = 0.5  # share of steps during which density control runs
    densify_rounds: int = 5  # evenly spaced over the densification window
    initial_share: float = 0.8  # Gaussians initialised, as a share of the planned count; densification adds the rest
    # The per-pixel error term of the loss (codec.train.losses.DISTORTIONS): "l1", the paper's, or "rmse", the
    # square root of the mean squared error, whose gradient is MSE's (PSNR's own) at L1's scale.
    distortion: Distortion = "l1"
    ssim_weight: float = 0.2  # loss = (1 - w) distortion + w (1 - SSIM)
    position_bits: int = 10
    # Bits of each per-Gaussian column (the groups coded per Gaussian; a codebook's entries have 8). Shapes:
    # without the rate term 5 bits gave 0.4 dB more than 4 and 6 no more than 5; under it, which keeps the
    # finer grid's entropy down, 7 bits beat 5 (the default's comment below). Colours (colour x opacity under
    # accumulated blending): under the rate term 7 bits cost 0.24 dB on kodim23, 5 bits 0.27 dB on six images.
    shape_bits: int = 7
    color_bits: int = 6
    lr_xy: float = 0.2  # pixels per step at the start
    lr_log_scale: float = 0.02
    lr_rotation: float = 0.02
    lr_color: float = 0.01
    lr_opacity: float = 0.05
    # Learning-rate decay over the whole encode, as the final rate's share of the first (exponential).
    position_lr_decay: float = 0.01
    lr_decay: float = 0.1
    # Initialisation: share of the sampling density that follows image detail (the rest is uniform).
    detail_share: float = 0.7
    # Density control: Gaussians below this opacity are pruned at each round; at most this share of the
    # count is grown per round; split Gaussians shrink by this factor.
    prune_opacity: float = 0.001
    max_growth: float = 0.25
    split_shrink: float = 1.6
    # Share of the quantised steps after which the stream is measured once more: the remaining steps heal
    # a prune there, which at the final write costs the image much more.
    remeasure_at: float = 0.75
    # Weight of the rate term (codec.train.rate_model: bits per pixel of the per-Gaussian columns) in the loss, in
    # units of the distortion term per bit per pixel at 0.125 bpp (codec.train.rate_model.weight_at scales it to the
    # target); 0: none. Needs shapes and colours both coded per Gaussian.
    rate_weight: float = 0.0
    # Gaussians per colour codebook entry (the codebook size is the power of two nearest N / this).
    gaussians_per_entry: int = 16
    # Let each coded column take a two-sided geometric model where it beats its histogram (format version 3).
    parametric_models: bool = False
    # Accumulated blending only: every pixel starts from the image's mean colour (three bytes, format version
    # 4), and the Gaussians, initialised to their pixels minus it, draw what differs from it.
    background: bool = False

    def __post_init__(self) -> None:
        if self.distortion not in DISTORTIONS:
            raise ValueError(f"distortion must be one of {DISTORTIONS}, not {self.distortion!r}")
        for name in ("shape_bits", "color_bits"):
            if not 1 <= getattr(self, name) <= MAX_SCALAR_BITS:
                raise ValueError(f"{name} must be 1 to {MAX_SCALAR_BITS}, not {getattr(self, name)}")
        if self.background and self.blend_mode != "sum":
            raise ValueError("a background needs accumulated blending (blend_mode='sum')")
        if self.rate_weight and not (self.shape_per_gaussian and self.color_per_gaussian):
            raise ValueError("rate_weight needs shapes and colours both coded per Gaussian")


METHODS = {
    # Order-free accumulated blending: Gaussians can be stored sorted by position, which halves position
    # bits. Each other choice is an ablation row in BENCHMARKS.md (python -m bench.ablation): no SSIM term
    # (L1 + SSIM: -0.64 dB against L1 and 2x slower per step), half the steps at half resolution (all at full
    # resolution: -0.11 dB and slower), shapes as log covariances per Gaussian (a K-means codebook: -0.68 dB).
    # 1800 steps instead of 1200: +0.34 dB on five Kodak images at 0.125 bpp for a median encode of 78 s
    # instead of 52 s on a 2-core CPU (the `ablation-iterations` section), inside the 90 s the product allows.
    # Colours per Gaussian (format v2) under a rate term of weight 0.003 instead of a colour codebook:
    # +0.17 dB on six Kodak images at 0.125 bpp (the `rd-v2` section); either alone does not pay.
    # 7-bit shapes instead of 5, the fit at half resolution to 0.6 of the steps (not 0.5) and the quantised
    # phase from there (not 0.7): +0.27 dB on six Kodak images at 0.125 bpp, the smooth ones up to +0.77 and
    # the most textured (kodim05) -0.04 to -0.18 dB at every rate; median encode 92 s against 99 s on
    # kodim23 and kodim05 (the `rd-v2-shapes` section). On top of 7-bit shapes the two shares gave +0.04 dB on
    # three images (noise); they move work to half resolution.
    # RMSE instead of L1 as the distortion: +0.59 dB on six Kodak images at 0.125 bpp, every one up (+0.35 to
    # +0.92), and +0.46 to +0.76 on two at 0.042 and 0.183 (the `rd-v2-rmse` section). L1 pulls every pixel
    # alike, so the fit spent its Gaussians on many small errors where PSNR is lost to the large ones.
    # Two-sided geometric models where they beat histograms (format v3): kodim23's side information at 0.042
    # bpp falls from 2,224 bits to 264, which buys 11% more Gaussians: +0.14 and +0.09 dB on kodim23 and
    # kodim05 at 0.042, +0.17 and +0.11 at 0.125 (the `rd-v2-geometric` section). A rate term under the
    # geometric models instead of the histograms' entropy gave no fewer bits and -0.15 dB on kodim23.
    # A background (format v4): every pixel starts from the image's mean colour and the Gaussians, initialised
    # to their pixels less it, draw only what differs. Without one the accumulated sum starts from black, so
    # Gaussians spent themselves building up the mean level between the details. On five Kodak images at 0.042
    # bpp +0.01 to +1.20 dB (+0.51 on average); at 0.125 +0.21 and +0.50 on kodim23 and kodim03 (the
    # `rd-v2-background` section). Drawn over it without initialising to pixels less it: -0.15 dB on kodim23.
    "default": Method("default", blend_mode="sum", distortion="rmse", ssim_weight=0.0, coarse_share=0.6, fit_share=0.6,
                      shape_per_gaussian=True, color_per_gaussian=True, rate_weight=0.003, iterations=1800,
                      parametric_models=True, background=True),
    # The paper's configuration: alpha blending, K-means VQ of both groups, 10-bit positions.
    "paper": Method("paper", blend_mode="alpha"),
}
