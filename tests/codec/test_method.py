"""Methods as typed parts: the default's defaults, the paper's differences, the schedule's answers, overrides."""

import dataclasses

import pytest

import codec

from codec.train.method import METHODS, PARTS, DensityConfig, InitConfig, LossConfig, Method, OptimiserConfig, Schedule


def test_the_dataclass_defaults_are_the_default_method():
    assert METHODS["default"] == Method("default")
    assert PARTS == ("schedule", "loss", "optimiser", "init", "density", "format", "texture")


def test_the_paper_differs_in_schedule_loss_and_format_only():
    paper = METHODS["paper"]
    assert (paper.optimiser, paper.init, paper.density) == (OptimiserConfig(), InitConfig(), DensityConfig())
    assert paper.schedule == Schedule(iterations=1200, coarse_share=0.0, fit_share=0.7, scale_from_density=0.0)
    assert paper.loss == LossConfig(distortion="l1", ssim_weight=0.2, rate_weight=0.0)
    assert paper.format.blend_mode == "alpha" and not paper.format.background
    assert not (paper.format.shape_per_gaussian or paper.format.color_per_gaussian or paper.format.parametric_models)


def test_the_schedule_over_an_encode():
    steps = Schedule(coarse_share=0.6, fit_share=0.6, densify_until=0.5, densify_rounds=5, remeasure_at=0.75).over(100)
    assert steps.total == 100 and steps.fit_steps == 60
    assert [s for s in range(100) if steps.is_coarse(s)] == list(range(60))
    # Rounds after steps 10, 20, .. 50: the step index is 0-based, the round follows the step.
    assert [s for s in range(100) if steps.is_density_round(s)] == [9, 19, 29, 39, 49]
    assert steps.remeasure_step == 60 + 30 and [s for s in range(100) if steps.remeasures(s)] == [90]


def test_density_rounds_stay_inside_the_fit_and_a_short_encode_still_fits():
    steps = Schedule(fit_share=0.3, densify_until=0.5, densify_rounds=5).over(100)
    assert [s for s in range(100) if steps.is_density_round(s)] == [9, 19]  # the rest would fall after the fit
    tiny = Schedule().over(2)
    assert tiny.fit_steps == 1 and not any(tiny.is_density_round(s) for s in range(2))
    assert not any(tiny.remeasures(s) for s in range(2))  # never on the first quantised step


def test_replace_reaches_into_parts_and_keeps_the_rest():
    base = METHODS["default"]
    changed = base.replace(name="mine", **{"format.shape_bits": 5, "schedule.fit_share": 0.7})
    assert changed.name == "mine" and changed.format.shape_bits == 5 and changed.schedule.fit_share == 0.7
    assert changed.format == dataclasses.replace(base.format, shape_bits=5) and changed.loss is base.loss
    assert base.format.shape_bits == 7  # the original untouched
    whole = base.replace(loss=LossConfig(distortion="l1"))
    assert whole.loss.distortion == "l1"


@pytest.mark.parametrize("changes, message", [
    ({"colour.bits": 5}, "not one of the parts"),
    ({"loss": LossConfig(), "loss.ssim_weight": 0.1}, "replaced whole"),
    ({"format.blend_mode": "max"}, "blend_mode must be one of"),
    ({"format.blend_mode": "alpha"}, "a background needs accumulated blending"),
    ({"format.shape_per_gaussian": False}, "rate_weight needs shapes and colours both coded per Gaussian"),
    ({"schedule.fit_share": 1.5}, "fit_share must be within"),
    ({"loss.rate_weight": -1.0}, "rate_weight must be >= 0"),
])
def test_replace_refuses_what_no_method_can_be(changes, message):
    with pytest.raises(ValueError, match=message):
        METHODS["default"].replace(**changes)


def test_an_unknown_field_of_a_part_is_a_type_error():
    with pytest.raises(TypeError):
        METHODS["default"].replace(**{"format.colour_bits": 5})



def test_steps_grow_with_the_planned_density_up_to_the_cap():
    schedule = codec.METHODS["default"].schedule
    pixels = 768 * 512
    assert schedule.steps_for(900, pixels) == schedule.iterations  # 0.125 bpp on Kodak: as before
    assert schedule.steps_for(3028, pixels) > schedule.iterations  # 0.35 bpp: in between
    assert schedule.steps_for(3028, pixels) < 2 * schedule.iterations
    assert schedule.steps_for(4410, pixels) == 2 * schedule.iterations  # 0.5 bpp: the cap
    assert codec.METHODS["paper"].schedule.steps_for(10**6, pixels) == codec.METHODS["paper"].schedule.iterations


def test_an_encodes_steps_follow_its_plan_unless_asked():
    method = codec.METHODS["default"]
    gaussians_only = codec.EncodeOptions(bpp=0.5, method=method.replace(**{"texture.from_bpp": 1.0}))
    assert gaussians_only.steps(512, 768) == 2 * method.schedule.iterations
    assert codec.EncodeOptions(bpp=0.125).steps(512, 768) == method.schedule.iterations
    assert codec.EncodeOptions(bpp=0.5, iterations=300, method=gaussians_only.method).steps(512, 768) == 300


def test_the_texture_layer_takes_its_share_and_its_steps_where_it_applies():
    method = codec.METHODS["default"]
    options = codec.EncodeOptions(bpp=0.5)
    assert options.gaussian_bpp(512, 768) == 0.5 * method.texture.gaussian_share
    assert options.texture_steps(512, 768) == method.texture.steps
    assert options.steps(512, 768) == options.gaussian_steps(512, 768) + method.texture.steps
    assert codec.EncodeOptions(bpp=0.5, iterations=300).steps(512, 768) == 600  # both phases take the count
    # Below its rate, on a small picture, and in the paper's method: Gaussians only.
    assert codec.EncodeOptions(bpp=0.25).texture_steps(512, 768) == 0
    assert codec.EncodeOptions(bpp=0.5).texture_steps(200, 300) == 0
    assert codec.EncodeOptions(bpp=0.5, method="paper").texture_steps(512, 768) == 0


def test_a_schedule_refuses_a_scale_below_one():
    with pytest.raises(ValueError, match="max_step_scale"):
        Schedule(max_step_scale=0.5)


def test_the_blend_mode_type_names_the_files_blend_modes():
    from typing import get_args

    from codec.format.values import BLEND_MODES
    from codec.train.method import BlendMode

    assert get_args(BlendMode) == BLEND_MODES
