"""Where the bits of a .gsi file go: header, side information, positions, shapes and colours, the texture layer.

Header and side information are sections of known length. The payload is one range-coded stream in which
positions, shapes and colours interleave, so its split is estimated: the payload's real length is shared
out in proportion to each part's estimate from its streams (``Stream.report_bits``: the empirical entropy
of the histogram the file stores, or under a geometric model a few percent less than what the coder
spends, alike for every part).
"""

from __future__ import annotations

from codec.format.bitstream import CRC_BYTES, read_bitstream
from codec.format.streams import STREAMS, present


def stream_breakdown(data: bytes) -> dict[str, int]:
    """Bits of each part of a bitstream; they add up to ``8 * len(data)``."""
    q = read_bitstream(bytes(data))
    header = q.layout
    estimate: dict[str, float] = {}
    for stream in present(STREAMS, header):
        estimate[stream.part] = estimate.get(stream.part, 0) + stream.report_bits(stream.take(q), header)
    payload_bits = 8 * header.payload_length
    total = sum(estimate.values())
    parts = {name: round(payload_bits * bits / total) if total else 0 for name, bits in estimate.items()}
    *first, last = parts
    parts[last] = payload_bits - sum(parts[name] for name in first)  # the rounding lands here
    texture = {"texture": 8 * header.texture_length} if header.texture_length else {}
    return {"header": 8 * (header.side_start + CRC_BYTES), "side_information": 8 * header.side_length, **parts,
            **texture}
