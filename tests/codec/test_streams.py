"""The table of coded streams: a new stream is one class and one entry; the flags' version chain; the one
grid step both sides use."""

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from codec.errors import BitstreamError
from codec.format.bitstream import FIRST_VERSION, Flag, layout_flags, most_side_bytes, parse_header, read_bitstream
from codec.format.bitstream import read_sections, write_bitstream, write_sections
from codec.format.entropy import read_model, symbol_bits, write_model
from codec.format.streams import STREAMS, Coded, Read, Stream, longest_model_bits, present
from codec.format.values import QuantizedGaussians, grid_step
from tests.codec.hostile import gaussians
from tests.codec.test_bitstream_errors import _patched


@dataclass(frozen=True)
class Parity(Stream):
    """A toy extra stream: each Gaussian's column parity, under a model of its two symbols."""

    key = "parity"
    part = "positions"

    def take(self, q: QuantizedGaussians) -> np.ndarray:
        return q.x % 2

    def put(self, fields, values, c) -> None:
        fields[self.key] = values

    def write(self, side, values, c):
        return [(values, write_model(side, values, 2, c.parametric_models))]

    def read(self, side, c) -> Read:
        return Read([Coded("payload.parity", *read_model(side, 2, c.n_gaussians, c.parametric_models))])

    def most_side_bits(self, c) -> int:
        return longest_model_bits(2, c)

    def plan_bits(self, c) -> tuple[float, float]:
        return 1.0, 0.0

    def report_bits(self, values, c) -> float:
        return symbol_bits(values)


@pytest.mark.parametrize("per_gaussian", [True, False])
def test_a_stream_registered_in_a_copy_of_the_table_round_trips(per_gaussian):
    q = gaussians(64, 48, 50, 2.0, position_bits=8, per_gaussian=per_gaussian, shape_bits=5, k_color=7,
                  color_per_gaussian=per_gaussian, color_bits=6, seed=2)
    data = write_bitstream(q)
    header = parse_header(data)
    table = STREAMS + (Parity(),)
    side, payload = write_sections(table, header, {stream.key: stream.take(q) for stream in present(table, header)})
    assert len(side) <= most_side_bytes(table, header)
    assert most_side_bytes(table, header) > most_side_bytes(STREAMS, header)
    values = read_sections(table, header, side, payload)
    fields = {}
    for stream in present(table, header):
        stream.put(fields, values[stream.key], header)
    assert np.array_equal(fields.pop("parity"), q.x % 2)
    back = QuantizedGaussians(layout=header, **fields)
    expected = read_bitstream(data)
    for name in ("x", "y", "shape_codebook", "shape_index", "color_codebook", "color_index"):
        assert np.array_equal(getattr(back, name), getattr(expected, name)), name
    # Without it, the same values make the file's own sections: the extra stream only adds to them.
    side_end = header.side_start + header.side_length
    assert write_sections(STREAMS, header, values) == (data[header.side_start:side_end], data[side_end:-4])
    assert len(side) > header.side_length and len(payload) >= header.payload_length


@pytest.mark.parametrize("flags", [Flag(v) for v in range(64) if not (v & Flag.BACKGROUND and not v & Flag.SUM_BLEND)])
def test_a_file_is_written_in_the_lowest_version_of_its_flags_and_refused_below_it(flags):
    q = gaussians(64, 48, 30, 2.0, position_bits=8, rows_sorted=Flag.ROWS_SORTED in flags,
                  per_gaussian=Flag.SHAPE_PER_GAUSSIAN in flags, shape_bits=5,
                  color_per_gaussian=Flag.COLOR_PER_GAUSSIAN in flags, color_bits=6, seed=3)
    layout = dataclasses.replace(q.layout, blend_mode="sum" if Flag.SUM_BLEND in flags else "alpha",
                                 parametric_models=Flag.PARAMETRIC_MODELS in flags,
                                 background=(1, 2, 3) if Flag.BACKGROUND in flags else None)
    data = write_bitstream(dataclasses.replace(q, layout=layout))
    header = parse_header(data)
    version = max([FIRST_VERSION[flag] for flag in flags] + [1])
    assert (layout_flags(header), header.version) == (flags, version)
    if version > 1:
        with pytest.raises(BitstreamError) as info:
            parse_header(_patched(data, "version", version - 1))
        assert info.value.field == "flags"


def test_the_grid_step_is_one_definition_for_numpy_and_torch():
    span = np.array([0.0, 1e-3, 0.5, 3.0])
    for floor in (0.0, 0.01):
        host = grid_step(span, 6, floor=floor)
        assert np.array_equal(host, grid_step(torch.tensor(span), 6, floor=floor, where=torch.where).numpy())
    assert grid_step(span, 6)[0] == 1 / 63  # no span: every value is the minimum
    assert grid_step(span, 6)[1] == 1e-3 / 63 and grid_step(span, 6, floor=0.01)[1] == 0.01 / 63
    assert grid_step(span, 6, floor=0.01)[3] == 3.0 / 63
