"""The training loop: image -> trained, quantised Gaussians -> .gsi bytes.

Phases (when each runs: ``codec.train.method.Schedule``; the whole as a public object: ``EncodeRun``):
1. fit (``_fit``): content-aware initialisation, Adam on the method's loss (L1 or RMSE, plus SSIM for the paper's,
   plus the rate term ``codec.train.rate_model`` where the method weights it),
   the first steps optionally at half resolution, centres kept inside the image, and density control
   (``codec.train.density``) growing toward the count whose real stream, measured at each round, fills the budget;
2. quantise (``_quantise``, then ``_train_quantised``): the count is pruned to the measured budget if it
   overshoots; K-means clusters the groups (colour and opacity; log-covariance shapes) that the method
   does not code per Gaussian (``codec.train.quantise``); from then on codebook entries, per-Gaussian values and
   positions are trained, all snapped to their final grids in the forward pass (straight-through), the
   stream is measured once more while steps remain, and the best iterate is kept;
3. write (``_write``): codebooks and positions quantised exactly as trained (``codec.format.values``), entropy
   coded (``codec.format.bitstream``); pruned further only if the real file still exceeds the target.
Rate control (``codec.train.rate``) owns the budget and every count derived from it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from codec.format.bitstream import TEXTURE_LENGTH_BYTES, write_bitstream
from codec.train.density import DensityControl, importance_order, select
from codec.errors import EncodeCancelled
from codec.train.gaussians import Gaussians, initialise
from codec.train.losses import training_loss
from codec.options import Backend, EncodeOptions
from codec.train.method import Method
from codec.train.quantise import Codebook, QuantisedModel
from codec.format.values import Layout, background_color
from codec.train.rate_model import bits_per_pixel, weight_at
from codec.train.rate import BUDGET_FIT_ROUNDS, MIN_GAUSSIANS, RateControl, RatePlan, measure
from codec.train.texture import fit_texture
from kernels import PairBound, keep_freed_memory, render

PROGRESS_EVERY = 10
log = logging.getLogger("gsic.encoder")


@dataclass(frozen=True)
class Progress:
    iteration: int
    total: int
    psnr: float  # of the current (training) render, dB


ProgressCallback = Callable[[Progress], "bool | None"]


@dataclass(frozen=True)
class EncodeResult:
    data: bytes
    n_gaussians: int
    device: str


def encode_array(
    pixels: np.ndarray,  # [H, W, 3] uint8
    options: EncodeOptions,
    progress: ProgressCallback | None = None,
) -> EncodeResult:
    run = EncodeRun(pixels, options, progress)
    run.fit()
    run.quantise()
    run.train_quantised()
    return run.write()


class EncodeRun:
    """One encode, phase by phase: ``encode_array`` runs the phases in order; a bench may look in between
    (``fitted_inputs``, ``quantised_inputs``, ``render``) without changing what the encode does."""

    def __init__(self, pixels: np.ndarray, options: EncodeOptions,  # pixels [H, W, 3] uint8
                 progress: ProgressCallback | None = None):
        method, self.device = options.config, options.torch_device
        height, width = pixels.shape[:2]
        if self.device.type == "cpu":
            keep_freed_memory()  # each step's image-sized temporaries would otherwise be page-faulted in anew
        target = torch.tensor(pixels, dtype=torch.float32, device=self.device) / 255
        gaussian_bpp = options.gaussian_bpp(height, width)
        self.rate = RateControl.for_image(gaussian_bpp, height, width, method)
        gaussian_steps, self.texture_steps = options.gaussian_steps(height, width), options.texture_steps(height, width)
        self.training = _Training(target, self.rate.plan, method, gaussian_steps, options.seed,
                                  progress, weight_at(method.loss.rate_weight, gaussian_bpp),
                                  _mean_color(pixels) if method.format.background else None, options.backend,
                                  reported_total=gaussian_steps + self.texture_steps)
        self.model: QuantisedModel | None = None  # from ``quantise`` on
        self.target_bits = options.target_bpp * height * width

    def fit(self) -> None:
        with _phase("fit"):
            _fit(self.training, self.rate)

    def quantise(self) -> None:
        with _phase("quantise"):
            self.model = _quantise(self.training, self.rate)

    def train_quantised(self) -> None:
        with _phase("train_quantised"):
            _train_quantised(self.training, self.model, self.rate)

    def write(self) -> EncodeResult:
        with _phase("write"):
            data = _write(self.training, self.model, self.rate)
        if self.texture_steps:
            with _phase("texture"):
                data = self._add_texture(data)
        return EncodeResult(data=data, n_gaussians=len(self.training.gaussians), device=str(self.device))

    def _add_texture(self, data: bytes) -> bytes:
        """The file with a texture layer fitted over what its Gaussians decode to, in the bits they left; the
        Gaussians' file as it is when no layer fits."""
        training = self.training
        base = self.render(self.quantised_inputs())
        budget = self.target_bits - 8 * (len(data) + TEXTURE_LENGTH_BYTES)
        report = lambda step, image: training.report(training.total + step, image, training.target)  # noqa: E731
        section = fit_texture(training.target, base, budget, training.method.texture, self.texture_steps,
                              training.generator, report) if budget > 0 else None
        if section is None:
            return data
        with torch.no_grad():
            return write_bitstream(self.model.to_quantized(training.gaussians), section)

    def fitted_inputs(self) -> list[Tensor]:  # (means, scales, rotations, colours, opacities), detached
        return [t.detach() for t in self.training.fitted_inputs()]

    def quantised_inputs(self) -> list[Tensor]:  # the same, as the decoder will see them (from ``quantise`` on)
        return [t.detach() for t in self.model.render_inputs(self.training.gaussians)]

    def render(self, inputs: list[Tensor]) -> Tensor:  # inputs as ``fitted_inputs``; [H, W, 3] as decoded
        training = self.training
        with torch.no_grad():
            return training.over_background(render(*inputs, training.height, training.width,
                                                   training.method.format.blend_mode, training.backend))

    @property
    def target(self) -> Tensor:  # [H, W, 3] the image in [0, 1]
        return self.training.target


# --- the phases -----------------------------------------------------------------------------------
def _phase(name: str) -> torch.profiler.record_function:  # a named range for torch.profiler (bench.profile_encode)
    return torch.profiler.record_function(f"gsic.{name}")


def _fit(training: "_Training", rate: RateControl) -> None:
    """The schedule's fit steps: unquantised Gaussians, with density control."""
    density = DensityControl(training.method.density, training.generator)

    def count_that_fits(gaussians: Gaussians) -> int:  # measured on the stream the current set would make
        model = training.cluster(gaussians, rate.plan)
        return rate.growth_target(len(gaussians), measure(model.to_quantized(gaussians)))

    for step in range(training.steps.fit_steps):
        image, target = training.step(step, training.fitted_inputs)
        density.observe(training.gaussians)
        if training.steps.is_density_round(step):
            training.check_pair_bounds()
            training.gaussians = density.densify(training.gaussians, training.optimizer, count_that_fits)
        training.end_step(step, image, target)


def _quantise(training: "_Training", rate: RateControl) -> QuantisedModel:
    """Prune to the measured budget, cluster both attribute groups, and train the codebooks from here on.
    Nothing is grown here: new Gaussians disturb the fitted image with too few steps left to recover;
    densification grew to the measured count."""
    for fit_round in range(BUDGET_FIT_ROUNDS):
        model = training.cluster(training.gaussians, rate.plan)
        if not _prune_to_fit(training, model, rate) or fit_round == BUDGET_FIT_ROUNDS - 1:
            break  # the final write prunes whatever still overshoots
    training.train_codebooks(model)
    return model


def _train_quantised(training: "_Training", model: QuantisedModel, rate: RateControl) -> None:
    """The steps after the fit, on exactly what the decoder will see. Quantised training jitters from
    step to step (values hop between grid points), so the best iterate is kept; its render is exactly what
    the decoder will show."""
    best = _BestIterate()
    for step in range(training.steps.fit_steps, training.total):
        if training.steps.remeasures(step) and _prune_to_fit(training, model, rate):
            best = _BestIterate()  # earlier iterates have other Gaussians
        before = [t.detach().clone() for t in training.trained_tensors(model)]
        image, target = training.step(step, lambda: model.render_inputs(training.gaussians))
        best.offer(_mse(image, target), before)
        training.end_step(step, image, target)
    best.restore(training.trained_tensors(model))
    training.check_pair_bounds()


class _BestIterate:
    """The lowest-error iterate so far, chosen on the device: a comparison and a masked copy per step,
    where reading each error back to the host would make every step wait for the GPU."""

    def __init__(self) -> None:
        self._error: Tensor | None = None  # [] the best error so far (inf before any finite one)
        self._found: Tensor | None = None  # [] bool: some iterate beat inf (False while all were NaN)
        self._values: list[Tensor] = []

    def offer(self, error: Tensor, values: list[Tensor]) -> None:  # error [] of the iterate ``values``
        if self._error is None:
            self._error, self._values = torch.full_like(error, math.inf), values
            self._found = torch.zeros_like(error, dtype=torch.bool)
        better = error < self._error
        self._error = torch.where(better, error, self._error)
        self._found = self._found | better
        self._values = [torch.where(better, new, kept) for new, kept in zip(values, self._values)]

    def restore(self, tensors: list[Tensor]) -> None:  # write the best iterate back, if there was one
        if self._found is None:
            return
        with torch.no_grad():
            for tensor, value in zip(tensors, self._values):
                tensor.copy_(torch.where(self._found, value, tensor))


def _write(training: "_Training", model: QuantisedModel, rate: RateControl) -> bytes:
    """The bitstream, pruned by least importance until it fits the budget (never below MIN_GAUSSIANS)."""
    with torch.no_grad():
        while True:
            data = write_bitstream(model.to_quantized(training.gaussians))
            keep = rate.final_target(len(training.gaussians), len(data) * 8)
            if keep is None:
                return data
            _keep(training, model, _importance(training, model, keep))


def _prune_to_fit(training: "_Training", model: QuantisedModel, rate: RateControl) -> bool:
    """Prune the least important Gaussians when the real stream exceeds the budget's fill."""
    training.check_pair_bounds()  # the stream is read back here anyway
    keep = rate.prune_target(len(training.gaussians), measure(model.to_quantized(training.gaussians)))
    if keep is None:
        return False
    _keep(training, model, _importance(training, model, keep))
    return True


def _keep(training: "_Training", model: QuantisedModel, index: Tensor) -> None:
    training.gaussians = select(training.gaussians, training.optimizer, index)
    model.keep(index)


def _importance(training: "_Training", model: QuantisedModel, keep: int) -> Tensor:  # [keep] indices
    return importance_order(model.shape_values(training.gaussians), model.color_values(training.gaussians),
                            training.method.format.blend_mode, keep)


def _mean_color(pixels: np.ndarray) -> tuple[int, int, int]:  # pixels [H, W, 3] uint8
    """The image's mean colour, rounded to bytes in integers: the same on every device."""
    sums, count = pixels.reshape(-1, 3).sum(axis=0, dtype=np.int64), pixels.shape[0] * pixels.shape[1]
    return tuple(int(v) for v in (2 * sums + count) // (2 * count))


def _mse(image: Tensor, target: Tensor) -> Tensor:  # [] of the displayable (clamped) render, on the device
    return (image.clamp(0, 1) - target).square().mean()


# --- Adam steps and schedules -----------------------------------------------------------------------
class _Training:
    """Adam on the Gaussians (and, once quantised, on the codebooks), the schedules and the progress."""

    def __init__(self, target: Tensor, plan: RatePlan, method: Method, total: int, seed: int,
                 progress: ProgressCallback | None, rate_weight: float = 0.0,  # rate_weight: at this target
                 background: tuple[int, int, int] | None = None,  # the file's background bytes, if any
                 backend: Backend = "auto",  # of every render (kernels.render)
                 reported_total: int | None = None):  # the whole encode's steps, as progress reports them
        self.target, self.method, self.total, self.progress = target, method, total, progress
        self.reported_total = reported_total or total
        self.backend = backend
        self.steps = method.schedule.over(total)
        self._rate_weight, self.background = rate_weight, background
        # Every render is drawn over the background (black: none), as the decoder draws it.
        self._background = (torch.as_tensor(background_color(background), device=target.device)
                            if background is not None else None)
        self.height, self.width = target.shape[:2]
        self.generator = torch.Generator().manual_seed(seed)
        # Initial points are distinct pixels, so a tiny image starts with at most one Gaussian per pixel.
        n_initial = min(max(MIN_GAUSSIANS, round(method.init.initial_share * plan.n_gaussians)),
                        self.height * self.width)
        self.gaussians = initialise(target, n_initial, self.generator, method.init.detail_share, self._background)
        half = ((self.height + 1) // 2, (self.width + 1) // 2)
        self._half_target = F.interpolate(target.permute(2, 0, 1)[None], size=half, mode="area")[0].permute(1, 2, 0)
        self._half_factor = torch.tensor([half[1] / self.width, half[0] / self.height], device=target.device)
        g = self.gaussians
        for tensor in g.tensors():
            tensor.requires_grad_(True)
        rates = method.optimiser
        groups = [(g.xy, rates.lr_xy), (g.log_scale, rates.lr_log_scale), (g.rotation, rates.lr_rotation),
                  (g.color, rates.lr_color), (g.opacity_logit, rates.lr_opacity)]
        self.optimizer = torch.optim.Adam([{"params": [t], "lr": lr} for t, lr in groups], eps=1e-15)
        position_decay = lambda step: rates.position_lr_decay ** (step / total)  # noqa: E731
        other_decay = lambda step: rates.lr_decay ** (step / total)  # noqa: E731
        self._scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, [position_decay] + [other_decay] * 4)
        self._codebooks: list[Codebook] = []
        self._codebook_optimizer: torch.optim.Optimizer | None = None
        self._pair_bounds: dict[tuple[int, int], PairBound] = {}  # per render size (coarse, full)
        # The rate term counts the per-Gaussian columns, whose form needs no clustering: one model serves
        # the fit and the quantised phase alike.
        self._rate_model = QuantisedModel(self._layout(plan), None, None, target.device) if rate_weight else None

    def train_codebooks(self, model: QuantisedModel) -> None:
        """From now on also train the model's codebook entries, each at its group's learning rate."""
        groups = [(vq, lr) for vq, lr in ((model.color_vq, self.method.optimiser.lr_color),
                                          (model.shape_vq, self.method.optimiser.lr_log_scale)) if vq is not None]
        self._codebooks = [vq for vq, _ in groups]
        if groups:
            self._codebook_optimizer = torch.optim.Adam([{"params": [vq.centroids], "lr": lr} for vq, lr in groups],
                                                        eps=1e-15)

    def trained_tensors(self, model: QuantisedModel) -> list[Tensor]:  # all a quantised step may change
        return self.gaussians.tensors() + [vq.centroids for vq in model.codebooks()]

    def cluster(self, gaussians: Gaussians, plan: RatePlan) -> QuantisedModel:
        """The quantised form of ``gaussians`` under ``plan``, codebooks fresh from K-means."""
        return QuantisedModel.cluster(gaussians, self._layout(plan), plan.k_shape, plan.k_color, self.generator)

    def _layout(self, plan: RatePlan) -> Layout:  # the ranges are the trained values', taken at the write
        form = self.method.format
        return Layout(width=self.width, height=self.height, blend_mode=form.blend_mode,
                      rows_sorted=plan.rows_sorted, shape_per_gaussian=plan.shape_per_gaussian,
                      color_per_gaussian=plan.color_per_gaussian, parametric_models=plan.parametric_models,
                      background=self.background, position_bits=plan.position_bits, shape_bits=plan.shape_bits,
                      color_bits=plan.color_bits, shape_ranges=(), color_ranges=())

    def fitted_inputs(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # nothing quantised yet
        g = self.gaussians
        return g.xy, g.log_scale.exp(), g.rotation, g.color, torch.sigmoid(g.opacity_logit)

    def step(self, step: int, render_inputs: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, Tensor]:
        """One Adam step on the image ``render_inputs`` draws; the schedule's coarse steps fit the
        half-resolution image instead (a quarter of the pixel work). Returns the render and its target."""
        coarse = self.steps.is_coarse(step)
        means, scales, rotations, colors, opacities = render_inputs()
        target = self._half_target if coarse else self.target
        height, width = target.shape[:2]
        if coarse:
            means = means * self._half_factor
            scales = scales * self._half_factor.mean()
        bound = self._pair_bounds.setdefault((height, width), PairBound())
        image = self.over_background(render(means, scales, rotations, colors, opacities, height, width,
                                            self.method.format.blend_mode, self.backend, pair_bound=bound))
        loss = training_loss(image, target, self.method.loss.distortion, self.method.loss.ssim_weight)
        if self._rate_model is not None:  # D + lambda R, R in bits per pixel of the image
            loss = loss + self._rate_weight * bits_per_pixel(self._rate_model.coded_columns(self.gaussians),
                                                             self._rate_model.layout, self.height * self.width)
        optimizers = [self.optimizer] + ([self._codebook_optimizer] if self._codebook_optimizer else [])
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)  # parameters the quantised phase does not use stay untouched
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        for vq in self._codebooks:
            vq.clamp_to_bounds()
        self._clamp_positions()
        return image.detach(), target

    def over_background(self, image: Tensor) -> Tensor:  # [H, W, 3] a render, drawn over the file's background
        return image if self._background is None else image + self._background

    def check_pair_bounds(self) -> None:
        """Only where the host waits anyway (density rounds, measured prunes, the end): re-size the Triton
        renderer's pair buffers from what the steps since needed (a no-op on the CPU renderer)."""
        for (height, width), bound in self._pair_bounds.items():
            if bound.check():
                log.warning("renders at %d x %d since the last check needed more tile pairs than sized and "
                            "drew without some; the bound is now %d pairs", height, width, bound.capacity)

    def end_step(self, step: int, image: Tensor, target: Tensor) -> None:
        self._scheduler.step()
        self.report(step, image, target)

    def report(self, step: int, image: Tensor, target: Tensor) -> None:  # step of the whole encode, 0-based
        if self.progress is not None and (step % PROGRESS_EVERY == 0 or step == self.reported_total - 1):
            mse = float(_mse(image, target))  # reads back: progress reports are host syncs by nature
            psnr = 10 * math.log10(1 / mse) if mse > 0 else float("inf")
            if self.progress(Progress(step + 1, self.reported_total, psnr)) is False:
                raise EncodeCancelled(f"cancelled at iteration {step + 1} of {self.reported_total}")

    def _clamp_positions(self) -> None:
        """Keep centres inside the image, where the format's position grid is, all through training: clamping
        them only at quantisation would move every Gaussian that had drifted out at once, with no steps to heal."""
        with torch.no_grad():
            self.gaussians.xy[:, 0].clamp_(0, self.width)
            self.gaussians.xy[:, 1].clamp_(0, self.height)
