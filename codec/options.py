"""``EncodeOptions``: everything an encode may be asked for, validated once, here.

The CLI, the service and the benchmarks build one of these and carry it unchanged; a bad value raises
``ValueError`` naming it (the service answers 422 with the message).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from codec.train.method import METHODS, Method

# The paper's four Kodak rate points (Table 1 averages), by name.
RATE_PRESETS = {"lowest": 0.042, "low": 0.066, "medium": 0.125, "high": 0.183}
MIN_BPP, MAX_BPP = 0.02, 2.0
DEFAULT_PRESET = "medium"
# Bounds one encode's work for library callers as GSIC_MAX_ITERATIONS does for the service's.
MAX_ITERATIONS = 100_000
# The renderer an encode trains with (kernels.render's backends): "auto" is Triton on CUDA tensors, numba on the
# CPU; "triton" on the CPU needs TRITON_INTERPRET=1 (a test of the GPU path without a GPU).
Backend = Literal["auto", "reference", "cpu", "triton"]
BACKENDS = get_args(Backend)


@dataclass(frozen=True)
class EncodeOptions:
    """Target (a bpp or a preset name; neither: the "medium" preset), method, iterations, seed, device, renderer."""

    bpp: float | None = None
    preset: str | None = None
    method: str | Method = "default"  # a name of METHODS, or a Method of one's own (ablations)
    iterations: int | None = None  # None: the method's
    seed: int = 0
    device: str | None = None  # None: CUDA when available, else the CPU
    backend: Backend = "auto"

    def __post_init__(self) -> None:
        if self.bpp is not None and self.preset is not None:
            raise ValueError("give a target bpp or a preset, not both")
        if self.preset is not None and self.preset not in RATE_PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(sorted(RATE_PRESETS))}")
        if self.bpp is not None:
            if isinstance(self.bpp, bool) or not isinstance(self.bpp, (int, float)) or not MIN_BPP <= self.bpp <= MAX_BPP:
                raise ValueError(f"bpp must be a number within [{MIN_BPP}, {MAX_BPP}], got {self.bpp!r}")
        if not isinstance(self.method, Method) and self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(sorted(METHODS))}")
        if self.iterations is not None and (isinstance(self.iterations, bool) or not isinstance(self.iterations, int)
                                            or self.iterations < 1):
            raise ValueError(f"iterations must be a whole number >= 1, got {self.iterations!r}")
        if self.iterations is not None and self.iterations > MAX_ITERATIONS:
            raise ValueError(f"iterations must be at most codec.MAX_ITERATIONS ({MAX_ITERATIONS}), "
                             f"got {self.iterations}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.device is not None:
            import torch  # only an encode asking for a device pays for torch here

            try:
                device = torch.device(self.device)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"unknown device {self.device!r}: {exc}") from None
            if device.type not in ("cpu", "cuda"):
                raise ValueError(f"device must be cpu or cuda[:N], got {self.device!r}")
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"device {self.device!r} asked for, but no CUDA GPU is available")

    @property
    def target_bpp(self) -> float:
        if self.bpp is not None:
            return float(self.bpp)
        return RATE_PRESETS[self.preset or DEFAULT_PRESET]

    @property
    def config(self) -> Method:
        return self.method if isinstance(self.method, Method) else METHODS[self.method]

    @property
    def method_name(self) -> str:
        return self.config.name

    def steps(self, height: int, width: int) -> int:
        """The encode's step count: the Gaussians' and then the texture layer's."""
        return self.gaussian_steps(height, width) + self.texture_steps(height, width)

    def gaussian_steps(self, height: int, width: int) -> int:  # two at least: one fitting and one quantised step
        """The iterations asked for, else the method's schedule for the count this image's Gaussian budget plans."""
        if self.iterations is not None:
            return max(self.iterations, 2)
        from codec.train.rate import RateControl  # the plan is the trainer's; options stay cheap to import

        plan = RateControl.for_image(self.gaussian_bpp(height, width), height, width, self.config).plan
        return max(self.config.schedule.steps_for(plan.n_gaussians, height * width), 2)

    def texture_steps(self, height: int, width: int) -> int:  # 0: no texture layer
        texture = self.config.texture
        if not texture.applies(self.target_bpp, height, width):
            return 0
        return texture.steps if self.iterations is None else min(texture.steps, self.iterations)

    def gaussian_bpp(self, height: int, width: int) -> float:
        """The Gaussians' share of the target: all of it, unless a texture layer takes the rest."""
        texture = self.config.texture
        return self.target_bpp * (texture.gaussian_share if texture.applies(self.target_bpp, height, width) else 1)

    @property
    def torch_device(self) -> "torch.device":
        import torch

        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def replace(self, **changes) -> "EncodeOptions":
        return dataclasses.replace(self, **changes)
