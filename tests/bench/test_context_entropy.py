"""The offline context estimate: earlier neighbours are the nearest with a smaller index, and columns that
follow position cost much less as residuals than on their own."""

import numpy as np
import pytest

from bench.context_entropy import earlier_neighbours, estimate
from codec.format.bitstream import write_bitstream
from tests.codec.hostile import gaussians


def test_earlier_neighbours_are_the_nearest_with_a_smaller_index():
    xy = np.random.default_rng(0).random((1500, 2)) * 100  # more than one block of rows
    found = earlier_neighbours(xy, k=3)
    for i in (0, 1, 2, 3, 700, 1024, 1499):
        distance = np.linalg.norm(xy[:i] - xy[i], axis=1)
        expected = list(np.argsort(distance, kind="stable")[:3]) + [-1] * max(0, 3 - i)
        assert list(found[i]) == expected


def test_colours_that_follow_position_are_cheap_as_residuals_and_random_shapes_are_not():
    q = gaussians(64, 48, 300, 2.0, position_bits=8, per_gaussian=True, shape_bits=6, color_per_gaussian=True,
                  color_bits=6)
    # Each colour column a smooth function of position: spread over all 64 symbols, yet close to its
    # neighbours' (what a context model would exploit); the shapes stay uniformly random.
    gradient = np.column_stack([q.x, q.y, (q.x + q.y) // 2]) * 63 // 255
    q.color_codebook = np.column_stack([gradient, q.color_codebook[:, 3]])
    rows = estimate(write_bitstream(q))
    own, nearest, mean = rows["colours"]
    assert own > 15 and nearest < own / 2 and mean < own / 2
    shapes_own, shapes_nearest, shapes_mean = rows["shapes"]
    assert shapes_nearest > shapes_own and shapes_mean > shapes_own - 0.5


def test_refuses_a_codebook_file():
    q = gaussians(64, 48, 40, 2.0, position_bits=8)
    with pytest.raises(SystemExit, match="per Gaussian"):
        estimate(write_bitstream(q))
