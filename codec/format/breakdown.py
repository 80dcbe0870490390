"""Where the bits of a .gsi file go: header, side information, positions, shapes and colours.

Header and side information are sections of known length. The payload is one range-coded stream in which
positions, shapes and colours interleave, so its split is estimated: the payload's real length is shared
out in proportion to each part's empirical entropy (the histogram the file stores, or under a geometric
model a few percent less than what the coder spends, alike for every part).
"""

from __future__ import annotations

import numpy as np

from codec.format.bitstream import CRC_BYTES, read_bitstream
from codec.format.entropy import symbol_bits


def stream_breakdown(data: bytes) -> dict[str, int]:
    """Bits of each part of a bitstream; they add up to ``8 * len(data)``."""
    q = read_bitstream(bytes(data))
    header, n = q.layout, len(q)
    rows = np.diff(q.y, prepend=0) if header.rows_sorted else None
    shape_symbols = list(q.shape_codebook.T) if header.shape_per_gaussian else [q.shape_index]
    color_symbols = list(q.color_codebook.T) if header.color_per_gaussian else [q.color_index]
    estimate = {
        "positions": n * header.position_bits * (1 if rows is not None else 2) + (symbol_bits(rows) if rows is not None else 0),
        "shapes": sum(symbol_bits(s) for s in shape_symbols),
        "colors": sum(symbol_bits(s) for s in color_symbols),
    }
    payload_bits = 8 * header.payload_length
    total = sum(estimate.values())
    parts = {name: round(payload_bits * bits / total) if total else 0 for name, bits in estimate.items()}
    parts["colors"] = payload_bits - parts["positions"] - parts["shapes"]  # the rounding lands here
    return {"header": 8 * (header.side_start + CRC_BYTES), "side_information": 8 * header.side_length, **parts}
