"""The optimisation loop: image -> trained, quantised Gaussians -> .gsi bytes.

Phases (fractions of the iteration count, see ``codec.presets.Method``):
1. fit: content-aware initialisation, Adam on the method's loss (L1, plus SSIM for the paper's), the
   first steps optionally at half resolution, centres kept inside the image, adaptive density control
   (clone, split, prune) growing toward the count whose real stream, measured at each round, fills the
   budget;
2. quantise: the count is pruned to the measured budget if it overshoots; K-means (10 Lloyd iterations)
   clusters (colour, opacity) and, unless shapes are coded per Gaussian, the log-covariance shapes; from
   then on codebook entries, per-Gaussian shapes and positions are trained, all snapped to their final
   grids in the forward pass (straight-through), and the best iterate is kept;
3. write: codebooks and positions quantised exactly as trained, entropy coded (with order-free "sum"
   blending, sorted by grid row so rows are stored as gaps); pruned further only if the real file still
   exceeds the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from codec.bitstream import COLOR_COLUMNS, RANGE_BOUNDS, SHAPE_COLUMNS, QuantizedGaussians, write_bitstream
from codec.errors import EncodeCancelled
from codec.gaussians import Gaussians, initialise, log_covariance, position_step, scales_and_rotation
from codec.losses import l1_ssim_loss
from codec.presets import Method, resolve_method
from codec.quantize import fake_quantize, half_range, kmeans, quantize_uniform
from codec.rate import MIN_GAUSSIANS, RatePlan, plan_rate
from kernels import render

PROGRESS_EVERY = 10
BUDGET_FIT_ROUNDS = 4  # measure-and-adjust rounds of the Gaussian count before vector quantisation
BUDGET_FILL = 0.985  # aim just under the budget: training after this point moves the size a little
PRUNE_OPACITY = 0.001
SPLIT_SHRINK = 1.6


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
    target_bpp: float,
    *,
    method: str = "default",
    iterations: int | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: ProgressCallback | None = None,
) -> EncodeResult:
    config = resolve_method(method)
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    height, width = pixels.shape[:2]
    target = torch.tensor(pixels, dtype=torch.float32, device=torch_device) / 255
    budget = target_bpp * height * width
    plan = plan_rate(budget, height, width, config.position_bits, rows_sorted=config.blend_mode == "sum",
                     shape_per_gaussian=config.shape_per_gaussian)
    total = max(int(iterations or config.iterations), 2)
    encoder = _Encoder(target, plan, config, total, seed, progress)
    encoder.train(budget)
    data = encoder.write(budget)
    return EncodeResult(data=data, n_gaussians=len(encoder.gaussians), device=str(torch_device))


@dataclass
class _Codebook:
    """One vector-quantised attribute group: K-means once, then the entries themselves are trained."""

    centroids: Tensor  # [k, D] learnable
    assign: Tensor  # [N] fixed after clustering
    bits: int
    bounds: Tensor  # [D, 2] the range the format accepts per column

    @property
    def ranges(self) -> np.ndarray:  # [D, 2] float16-representable (min, max) of the entries
        return half_range(self.centroids.detach().cpu().numpy())

    def values(self) -> Tensor:  # [N, D] exactly what the decoder will see
        return fake_quantize(self.centroids, self.ranges, self.bits)[self.assign]

    def clamp_to_bounds(self) -> None:
        with torch.no_grad():
            self.centroids.copy_(torch.maximum(torch.minimum(self.centroids, self.bounds[:, 1]), self.bounds[:, 0]))


class _Encoder:
    def __init__(self, target: Tensor, plan: RatePlan, config: Method, total: int, seed: int,
                 progress: ProgressCallback | None):
        self.target, self.plan, self.config, self.total, self.progress = target, plan, config, total, progress
        self.height, self.width = target.shape[:2]
        self.generator = torch.Generator().manual_seed(seed)
        # Initial points are distinct pixels, so a tiny image starts with at most one Gaussian per pixel.
        n_initial = min(max(MIN_GAUSSIANS, round(config.initial_share * plan.n_gaussians)), self.height * self.width)
        self.gaussians = initialise(target, n_initial, self.generator)
        self.shape_vq: _Codebook | None = None
        self.color_vq: _Codebook | None = None
        half = ((self.height + 1) // 2, (self.width + 1) // 2)
        self._half_target = F.interpolate(target.permute(2, 0, 1)[None], size=half, mode="area")[0].permute(1, 2, 0)
        self._half_factor = torch.tensor([half[1] / self.width, half[0] / self.height], device=target.device)
        self._make_optimizer()

    # --- training -------------------------------------------------------------------------------
    def train(self, budget_bits: float) -> None:
        fit_steps = max(1, int(self.config.fit_share * self.total))
        rounds = self.config.densify_rounds
        densify_at = {round(self.config.densify_until * self.total * (i + 1) / rounds) for i in range(rounds)}
        grad_sum, since = torch.zeros(len(self.gaussians), device=self.target.device), 0
        best_error, best_values = math.inf, None
        # Training moves the stream size a little; checking it once more while steps remain lets them heal
        # a prune, which at the final write costs the image much more.
        refit_step = fit_steps + (self.total - fit_steps) * 3 // 4
        for step in range(self.total):
            if step == fit_steps:
                self._start_quantisation(budget_bits)
            if step == refit_step and step > fit_steps and self._prune_to_fit(budget_bits):
                best_error, best_values = math.inf, None  # earlier iterates have other Gaussians
            # Quantised training jitters from step to step (values hop between grid points), so the best
            # iterate is kept; its render is exactly what the decoder will show.
            before = self._trained_values() if step >= fit_steps else None
            image, target = self._step(coarse=step < self.config.coarse_share * self.total)
            if before is not None:
                error = _mse(image, target)
                if error < best_error:
                    best_error, best_values = error, before
            if step < fit_steps:
                grad_sum, since = grad_sum + self.gaussians.xy.grad.norm(dim=1), since + 1
                if step + 1 in densify_at and step + 1 < fit_steps:
                    self._densify(grad_sum / since, budget_bits)
                    grad_sum, since = torch.zeros(len(self.gaussians), device=self.target.device), 0
            self._scheduler.step()
            if self.progress is not None and (step % PROGRESS_EVERY == 0 or step == self.total - 1):
                self._report(step + 1, image, target)
        if best_values is not None:
            with torch.no_grad():
                for tensor, value in zip(self._trained_tensors(), best_values):
                    tensor.copy_(value)

    def _trained_tensors(self) -> list[Tensor]:
        return self.gaussians.tensors() + [vq.centroids for vq in self._codebooks()]

    def _trained_values(self) -> list[Tensor]:
        return [t.detach().clone() for t in self._trained_tensors()]

    def _step(self, coarse: bool) -> tuple[Tensor, Tensor]:  # the rendered image and the target it fits
        """One Adam step; ``coarse`` fits the half-resolution image instead (a quarter of the pixel work)."""
        means, scales, rotations, colors, opacities = self._render_inputs()
        target = self._half_target if coarse else self.target
        height, width = target.shape[:2]
        if coarse:
            means = means * self._half_factor
            scales = scales * self._half_factor.mean()
        image = render(means, scales, rotations, colors, opacities, height, width, self.config.blend_mode)
        loss = l1_ssim_loss(image, target, self.config.ssim_weight)
        for optimizer in self._optimizers():
            optimizer.zero_grad(set_to_none=True)  # parameters the VQ phase does not use stay untouched
        loss.backward()
        for optimizer in self._optimizers():
            optimizer.step()
        for vq in self._codebooks():
            vq.clamp_to_bounds()
        self._clamp_positions()
        return image.detach(), target

    def _clamp_positions(self) -> None:
        """Keep centres inside the image, where the format's position grid is, all through training:
        clamping them only at quantisation moved Gaussians that had drifted out (about -0.9 dB at once)."""
        with torch.no_grad():
            self.gaussians.xy[:, 0].clamp_(0, self.width)
            self.gaussians.xy[:, 1].clamp_(0, self.height)

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [self._optimizer] + ([self._codebook_optimizer] if self._codebooks() else [])

    def _codebooks(self) -> list[_Codebook]:
        return [vq for vq in (self.shape_vq, self.color_vq) if vq is not None]

    def _render_inputs(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        g = self.gaussians
        if self.color_vq is None:  # still fitting: nothing quantised yet
            return g.xy, g.log_scale.exp(), g.rotation, g.color, torch.sigmoid(g.opacity_logit)
        shape, color = self._shape_values(), self.color_vq.values()
        xy = self._snap_positions(g.xy)
        scales, rotation = scales_and_rotation(shape)
        return xy, scales, rotation, color[:, :3], color[:, 3]

    def _report(self, iteration: int, image: Tensor, target: Tensor) -> None:
        mse = _mse(image, target)
        psnr = 10 * math.log10(1 / mse) if mse > 0 else float("inf")
        if self.progress(Progress(iteration, self.total, psnr)) is False:
            raise EncodeCancelled(f"cancelled at iteration {iteration} of {self.total}")

    # --- optimiser bookkeeping ------------------------------------------------------------------
    def _make_optimizer(self) -> None:
        c, g = self.config, self.gaussians
        for tensor in g.tensors():
            tensor.requires_grad_(True)
        groups = [(g.xy, c.lr_xy), (g.log_scale, c.lr_log_scale), (g.rotation, c.lr_rotation),
                  (g.color, c.lr_color), (g.opacity_logit, c.lr_opacity)]
        self._optimizer = torch.optim.Adam([{"params": [t], "lr": lr} for t, lr in groups], eps=1e-15)
        total = self.total
        position_decay = lambda step: 0.01 ** (step / total)  # noqa: E731
        other_decay = lambda step: 0.1 ** (step / total)  # noqa: E731
        self._scheduler = torch.optim.lr_scheduler.LambdaLR(self._optimizer, [position_decay] + [other_decay] * 4)

    def _select(self, index: Tensor, edits: dict[str, Tensor] | None = None) -> None:
        """Keep Gaussians ``index`` (repeats allowed), carrying each one's Adam moments along."""
        old = self.gaussians.tensors()
        new = [t.detach()[index].clone() for t in old]
        self.gaussians = Gaussians(*new)
        for name, value in (edits or {}).items():
            getattr(self.gaussians, name).data.copy_(value)
        for group, tensor in zip(self._optimizer.param_groups, self.gaussians.tensors()):
            previous = group["params"][0]
            state = self._optimizer.state.pop(previous, None)
            tensor.requires_grad_(True)
            group["params"] = [tensor]
            if state:
                self._optimizer.state[tensor] = {key: (value[index].clone() if torch.is_tensor(value) and value.dim() else value)
                                                 for key, value in state.items()}
        for vq in self._codebooks():
            vq.assign = vq.assign[index]

    # --- adaptive density control ---------------------------------------------------------------
    def _densify(self, mean_grad: Tensor, budget_bits: float) -> None:
        """Prune transparent Gaussians, then grow the most-pulled ones, a quarter at most, up to the count
        that the real stream of the kept ones says fits the budget."""
        keep = torch.sigmoid(self.gaussians.opacity_logit.detach()) >= PRUNE_OPACITY
        index = keep.nonzero().squeeze(1)
        self._select(index)
        target, n = self._count_that_fits(budget_bits), len(index)
        if target > n:  # the pruned set is already selected; grow only where the budget has room
            self._grow(torch.arange(n, device=index.device), mean_grad[index], min(target - n, n // 4))

    def _count_that_fits(self, budget_bits: float) -> int:
        """The Gaussian count whose real stream fills the budget, extrapolated from the current one's."""
        self._cluster_both()
        bits = len(write_bitstream(self._quantized())) * 8
        self.shape_vq = self.color_vq = None
        return max(MIN_GAUSSIANS, round(len(self.gaussians) * BUDGET_FILL * budget_bits / bits))

    def _grow(self, kept: Tensor, mean_grad: Tensor, count: int) -> None:
        """Keep ``kept`` and add ``count`` Gaussians where the positional gradient is largest."""
        if count <= 0:
            self._select(kept)
            return
        chosen = kept[mean_grad[kept].topk(min(count, len(kept))).indices]
        max_scale = self.gaussians.log_scale.detach().exp().max(dim=1).values
        large = max_scale[chosen] > max_scale[kept].median()
        self._split_and_clone(kept, chosen, large)

    def _split_and_clone(self, kept: Tensor, chosen: Tensor, large: Tensor) -> None:
        """Split large chosen Gaussians in two (shrunk by SPLIT_SHRINK), clone small ones along their gradient."""
        g = self.gaussians
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
        log_scale[chosen] -= large[:, None].float() * math.log(SPLIT_SHRINK)
        index = torch.cat([kept, chosen])
        self._select(index, {"xy": torch.cat([xy[kept], child_xy]), "log_scale": log_scale[index]})

    # --- vector quantisation --------------------------------------------------------------------
    def _shape_vectors(self) -> Tensor:  # [N, 3] log covariance
        return log_covariance(self.gaussians.log_scale, self.gaussians.rotation)

    def _shape_values(self) -> Tensor:  # [N, 3] log covariance exactly as the decoder will see it
        if self.shape_vq is not None:
            return self.shape_vq.values()
        vectors = self._shape_vectors()
        return fake_quantize(vectors, self._shape_ranges(vectors), self.plan.shape_bits)

    def _shape_ranges(self, vectors: Tensor) -> np.ndarray:  # [3, 2] of per-Gaussian shapes, within the format's bounds
        bounds = _format_bounds(SHAPE_COLUMNS)
        return np.clip(half_range(vectors.detach().cpu().numpy()), bounds[:, :1], bounds[:, 1:])

    def _color_vectors(self) -> Tensor:  # [N, 4] colour and opacity
        g = self.gaussians
        return torch.cat([g.color, torch.sigmoid(g.opacity_logit)[:, None]], dim=1)

    def _start_quantisation(self, budget_bits: float) -> None:
        """Prune to the measured budget, cluster both attribute groups, and from here on train the
        codebooks and the positions. Nothing is grown here: new Gaussians disturbed the fitted image (a
        6 dB drop on kodim03) with too few steps left to recover; densification grew to the measured count."""
        for fit_round in range(BUDGET_FIT_ROUNDS):
            self._cluster_both()
            if not self._prune_to_fit(budget_bits) or fit_round == BUDGET_FIT_ROUNDS - 1:
                break  # the final write() prunes whatever still overshoots
            self.shape_vq = self.color_vq = None
        c = self.config
        groups = [{"params": [self.color_vq.centroids], "lr": c.lr_color}]
        if self.shape_vq is not None:
            groups.append({"params": [self.shape_vq.centroids], "lr": c.lr_log_scale})
        self._codebook_optimizer = torch.optim.Adam(groups, eps=1e-15)

    def _prune_to_fit(self, budget_bits: float) -> bool:
        """Prune the least important Gaussians when the real stream exceeds BUDGET_FILL of the budget."""
        bits = len(write_bitstream(self._quantized())) * 8
        if bits <= BUDGET_FILL * budget_bits:
            return False
        n = len(self.gaussians)
        keep = max(MIN_GAUSSIANS, math.floor(n * BUDGET_FILL * budget_bits / bits))
        if keep >= n:  # already at the floor: the final write() reports what fits
            return False
        self._select(self._importance(keep))
        return True

    def _cluster_both(self) -> None:
        plan = self.plan
        if plan.k_shape:
            self.shape_vq = self._cluster(self._shape_vectors(), plan.k_shape, plan.shape_bits, SHAPE_COLUMNS)
        self.color_vq = self._cluster(self._color_vectors(), plan.k_color, plan.color_bits, COLOR_COLUMNS)

    def _cluster(self, vectors: Tensor, k: int, bits: int, columns: tuple[str, ...]) -> _Codebook:
        bounds = torch.as_tensor(_format_bounds(columns), dtype=vectors.dtype, device=vectors.device)
        centroids, assign = kmeans(vectors.detach(), k, generator=self.generator)
        codebook = _Codebook(centroids.requires_grad_(True), assign, bits, bounds)
        codebook.clamp_to_bounds()
        return codebook

    def _snap_positions(self, xy: Tensor) -> Tensor:
        bits = self.plan.position_bits
        ranges = np.array([[0.0, self.width], [0.0, self.height]], dtype=np.float64)
        return fake_quantize(xy, ranges, bits)

    def _grid_positions(self, xy: Tensor) -> tuple[Tensor, Tensor]:
        levels = (1 << self.plan.position_bits) - 1
        cols = torch.round(xy[:, 0].clamp(0, self.width) / position_step(self.width, self.plan.position_bits))
        rows = torch.round(xy[:, 1].clamp(0, self.height) / position_step(self.height, self.plan.position_bits))
        return cols.clamp(0, levels), rows.clamp(0, levels)

    # --- writing --------------------------------------------------------------------------------
    def write(self, budget_bits: float) -> bytes:
        """The bitstream, pruned by least importance until it fits the budget (never below MIN_GAUSSIANS)."""
        with torch.no_grad():
            while True:
                data = write_bitstream(self._quantized())
                n = len(self.gaussians)
                excess = len(data) * 8 - budget_bits
                if excess <= 0 or n <= MIN_GAUSSIANS:
                    return data
                drop = min(n - MIN_GAUSSIANS, max(1, math.ceil(1.05 * excess / (len(data) * 8 / n))))
                self._select(self._importance(n - drop))

    def _importance(self, keep: int) -> Tensor:
        """Indices of the ``keep`` most important Gaussians, in their current order.

        Alpha blending: opacity times area. Accumulated blending: the energy a Gaussian adds to the image,
        |colour x opacity|^2 times area; opacity times area alone dropped small bright or negative-colour
        Gaussians that carry detail (-1.8 dB on kodim23 for a 0.9 % prune)."""
        shape, color = self._shape_values(), self.color_vq.values()
        area = (0.5 * (shape[:, 0] + shape[:, 2])).exp()
        if self.config.blend_mode == "sum":
            importance = (color[:, :3] * color[:, 3:]).square().sum(1) * area
        else:
            importance = color[:, 3] * area
        return importance.topk(keep).indices.sort().values

    def _quantized(self) -> QuantizedGaussians:
        cols, rows = self._grid_positions(self.gaussians.xy)
        x, y = cols.long().cpu().numpy(), rows.long().cpu().numpy()
        order = self._file_order(x, y)
        if self.shape_vq is not None:
            shape_codebook, shape_index = _compact(self.shape_vq)
            shape_ranges, shape_index = self.shape_vq.ranges, shape_index[order]
        else:
            vectors = self._shape_vectors()
            shape_codebook = vectors.detach().cpu().numpy()[order]
            shape_index, shape_ranges = np.arange(len(shape_codebook)), self._shape_ranges(vectors)
        color_codebook, color_index = _compact(self.color_vq)
        return QuantizedGaussians(
            width=self.width, height=self.height, blend_mode=self.config.blend_mode,
            position_bits=self.plan.position_bits, x=x[order], y=y[order], rows_sorted=self.plan.rows_sorted,
            shape_bits=self.plan.shape_bits, shape_ranges=shape_ranges, shape_per_gaussian=self.shape_vq is None,
            shape_codebook=quantize_uniform(shape_codebook, shape_ranges, self.plan.shape_bits),
            shape_index=shape_index,
            color_bits=self.color_vq.bits, color_ranges=self.color_vq.ranges,
            color_codebook=quantize_uniform(color_codebook, self.color_vq.ranges, self.color_vq.bits),
            color_index=color_index[order],
        )

    def _file_order(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:  # [N] permutation from training order
        """Sorted by grid row, then column, when rendering does not depend on order: rows then cost only
        their gaps (about log2(N!) bits less in all); alpha blending keeps its trained order."""
        return np.lexsort((x, y)) if self.plan.rows_sorted else np.arange(len(x))


def _mse(image: Tensor, target: Tensor) -> float:  # of the displayable (clamped) render
    return float((image.clamp(0, 1) - target).square().mean())


def _format_bounds(columns: tuple[str, ...]) -> np.ndarray:  # [D, 2] (low, high) the format accepts per column
    return np.array([RANGE_BOUNDS[c] for c in columns], dtype=np.float32)


def _compact(vq: _Codebook) -> tuple[np.ndarray, np.ndarray]:  # ([k', D] used centroids, [N] remapped index)
    """Drop codebook entries no Gaussian uses, so k never exceeds N and no bits are spent on them."""
    assign = vq.assign.cpu().numpy()
    used, remapped = np.unique(assign, return_inverse=True)
    return vq.centroids.detach().cpu().numpy()[used], remapped
