"""Named rate points and encoder methods, as typed dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

# The paper's four Kodak rate points (Table 1 averages), by name.
RATE_PRESETS = {"lowest": 0.042, "low": 0.066, "medium": 0.125, "high": 0.183}
MIN_BPP, MAX_BPP = 0.02, 2.0


@dataclass(frozen=True)
class Method:
    """How the encoder trains and quantises; rate control picks counts and bit-widths within it."""

    name: str
    blend_mode: str  # "alpha" (ordered blending, the paper) or "sum" (accumulated, order-free)
    shape_per_gaussian: bool = False  # scalar-quantised shape per Gaussian instead of a K-means codebook
    iterations: int = 1200  # total optimisation steps at full resolution
    coarse_share: float = 0.0  # first steps fitted at half resolution (coarse to fine)
    fit_share: float = 0.7  # steps before vector quantisation starts
    densify_until: float = 0.5  # share of steps during which density control runs
    densify_rounds: int = 5  # evenly spaced over the densification window
    initial_share: float = 0.8  # Gaussians initialised, as a share of the planned count; densification adds the rest
    ssim_weight: float = 0.2  # loss = (1 - w) L1 + w (1 - SSIM)
    position_bits: int = 10
    lr_xy: float = 0.2  # pixels per step at the start
    lr_log_scale: float = 0.02
    lr_rotation: float = 0.02
    lr_color: float = 0.01
    lr_opacity: float = 0.05


METHODS = {
    # Order-free accumulated blending: Gaussians can be stored sorted by position, which halves position
    # bits. Each other choice is an ablation row in BENCHMARKS.md (python -m bench.ablation): plain L1
    # (L1 + SSIM: -0.64 dB and 2x slower per step), half the steps at half resolution (all at full
    # resolution: -0.11 dB and slower), shapes as log covariances per Gaussian (a K-means codebook: -0.68 dB).
    "default": Method("default", blend_mode="sum", ssim_weight=0.0, coarse_share=0.5, shape_per_gaussian=True),
    # The paper's configuration: alpha blending, K-means VQ of both groups, 10-bit positions.
    "paper": Method("paper", blend_mode="alpha"),
}


def resolve_target(bpp: float | None, preset: str | None) -> float:
    """The target bpp from an explicit value or a preset name (exactly one of them)."""
    if (bpp is None) == (preset is None):
        raise ValueError("give exactly one of bpp or preset")
    if preset is not None:
        if preset not in RATE_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(RATE_PRESETS)}")
        return RATE_PRESETS[preset]
    if not MIN_BPP <= float(bpp) <= MAX_BPP:
        raise ValueError(f"bpp must be within [{MIN_BPP}, {MAX_BPP}], got {bpp}")
    return float(bpp)


def resolve_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
