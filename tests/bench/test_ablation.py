"""bench.ablation's variant table: every row is a method the encoder accepts, changed where it says."""

import pytest

import codec
from bench.ablation import VARIANTS, variant_method
from codec.train.method import PARTS


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_a_valid_method_with_its_overrides(name):
    base, overrides = VARIANTS[name]
    method = variant_method(name)
    assert method.name == "ablation"
    for key, value in overrides.items():
        part, field = key.split(".")
        assert getattr(getattr(method, part), field) == value
    # Everything the row does not name is its base method's.
    named_parts = {key.split(".")[0] for key in overrides}
    for part in PARTS:
        if part not in named_parts:
            assert getattr(method, part) == getattr(codec.METHODS[base], part)
    codec.EncodeOptions(method=method)
