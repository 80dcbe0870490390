"""The crafted worst-case bitstreams of tests/fixtures/hostile/, and how they were made.

    python -m tests.codec.hostile   # rewrites tests/fixtures/hostile/*.gsi

Each is a CRC-valid file built to cost a decoder the most it can within the service's default decode
limits (``GSIC_DECODE_MAX_PIXELS``, ``GSIC_DECODE_MAX_EVALUATIONS``), or to claim more than its bytes
carry. ``test_hostile_files`` holds each to the decode bounds.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from codec.decode.decoder import GAUSSIAN_COST, texture_evaluations
from codec.format.bitstream import HEADER_FIELDS, MAGIC, parse_header, write_bitstream
from codec.format.texture import MAX_HIDDEN, MAX_LEVELS, Texture, layer_shapes, level_shape, write_texture
from codec.format.values import Layout, QuantizedGaussians
from service.settings import Settings

DIR = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
COLOR_RANGES = ((0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (0.0, 1.0))


def gaussians(width: int, height: int, n: int, sigma: float, *, position_bits: int = 4, rows_sorted: bool = True,
              per_gaussian: bool = False, shape_bits: int = 1, k_color: int = 1, color_per_gaussian: bool = False,
              color_bits: int = 8, seed: int = 0) -> QuantizedGaussians:
    """N round Gaussians of standard deviation ``sigma`` px, spread over the grid, fully opaque."""
    rng = np.random.default_rng(seed)
    log_var = float(np.float16(2 * math.log(sigma)))
    layout = Layout(width=width, height=height, blend_mode="sum" if rows_sorted else "alpha", rows_sorted=rows_sorted,
                    shape_per_gaussian=per_gaussian, color_per_gaussian=color_per_gaussian, parametric_models=False, background=None, position_bits=position_bits,
                    shape_bits=shape_bits, color_bits=color_bits, shape_ranges=((log_var, log_var), (0.0, 0.0), (log_var, log_var)),
                    color_ranges=COLOR_RANGES)
    levels = 1 << position_bits
    x, y = rng.integers(0, levels, n), rng.integers(0, levels, n)
    if rows_sorted:
        order = np.lexsort((x, y))
        x, y = x[order], y[order]
    if per_gaussian:  # every shape symbol used, so the side information carries full histograms
        shapes, shape_index = rng.integers(0, 1 << shape_bits, (n, 3)), np.arange(n)
        shapes[:, 1] = 0  # stays round: the xy range is (0, 0) ... and symbol 0 is 0
    else:
        shapes, shape_index = np.zeros((1, 3), np.int64), np.zeros(n, np.int64)
    entries = n if color_per_gaussian else k_color  # per Gaussian: every colour symbol used, as for shapes
    top = (1 << color_bits) - 1
    colors = np.column_stack([rng.integers(0, top + 1, (entries, 3)), np.full(entries, top)])
    color_index = np.arange(n) if color_per_gaussian else np.arange(n) % k_color
    return QuantizedGaussians(layout=layout, x=x, y=y, shape_codebook=shapes, shape_index=shape_index,
                              color_codebook=colors, color_index=color_index)


def blank_texture(width: int, height: int) -> Texture:
    """The most work a texture section can ask for per pixel (every level, the widest network) in the fewest
    bytes: every latent 0, so each level's model has one symbol and its payload no bits at all."""
    return Texture(latents=tuple(np.zeros(level_shape(height, width, level), np.int32) for level in range(MAX_LEVELS)),
                   weights=tuple(np.ones((inputs + 1, outputs), np.int32)
                                 for inputs, outputs in layer_shapes(MAX_LEVELS, MAX_HIDDEN)),
                   exponents=(8, 8, 8))


def with_payload(data: bytes, payload: bytes) -> bytes:
    """The file with its payload replaced (length field and CRC refreshed): what the header claims stays."""
    offset = len(MAGIC) + sum(struct.calcsize("<" + f.fmt) for f in HEADER_FIELDS[:-1])
    header = parse_header(data)
    body = bytearray(data[:header.side_start + header.side_length] + payload)
    struct.pack_into("<I", body, offset, len(payload))
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def files() -> dict[str, bytes]:
    settings = Settings()
    side = int(math.isqrt(settings.decode_max_pixels))  # the largest square output a server renders
    n_max = 1 << 20
    # Gaussians that each cover the whole output: as many as the evaluation budget allows, and as many
    # sub-pixel ones as it allows.
    covering = settings.decode_max_evaluations // (side * side + GAUSSIAN_COST)
    most_tiny = settings.decode_max_evaluations // (GAUSSIAN_COST + 1)
    most_n = write_bitstream(gaussians(side, side, n_max, 0.02))
    # The largest square picture whose blank texture the evaluation budget admits (its latents and pixels).
    textured = side
    while texture_evaluations(write_texture(blank_texture(8, 8)), textured, textured, textured * textured) \
            > settings.decode_max_evaluations:
        textured -= 16
    payload = payload_of(most_n)
    return {
        # The header's 2^20 Gaussians and 4096 x 4096 pixels with no payload to back them (issue 14's 86 bytes).
        "claims_max_n.gsi": with_payload(write_bitstream(gaussians(4096, 4096, n_max, 0.02)), b""),
        # 2^20 real Gaussians (every position coded), each smaller than a pixel, at the largest output, and as
        # many as the server's budget allows.
        "max_n.gsi": most_n,
        "max_tiny_gaussians.gsi": write_bitstream(gaussians(side, side, most_tiny, 0.02, position_bits=14)),
        # The same with its payload cut by a quarter, then with words appended.
        "max_n_truncated.gsi": with_payload(most_n, payload[: len(payload) * 3 // 16 * 4]),
        "max_n_trailing.gsi": with_payload(most_n, payload + b"\x01\x00\x00\x00" * 64),
        # No Gaussian at all at the largest picture the format allows: a black image, or refused by size.
        "empty_max_size.gsi": write_bitstream(gaussians(16384, 2441, 0, 1.0)),
        "empty_server_size.gsi": write_bitstream(gaussians(side, side, 0, 1.0)),
        # Gaussians covering the whole output, right at the evaluation budget, and one past it.
        "max_evaluations.gsi": write_bitstream(gaussians(side, side, covering, 2 * side)),
        "over_evaluations.gsi": write_bitstream(gaussians(side, side, covering + 1, 2 * side)),
        # The longest side information: 14-bit sorted rows, per-Gaussian 10-bit shapes, 4096 colours.
        "max_side_info.gsi": write_bitstream(gaussians(side, side, 1 << 13, 0.5, position_bits=14, per_gaussian=True,
                                                       shape_bits=10, k_color=4096)),
        # Version 2: colours per Gaussian too, 10 bits each, so the side information carries 7 full histograms.
        "max_side_info_v2.gsi": write_bitstream(gaussians(side, side, 1 << 13, 0.5, position_bits=14, per_gaussian=True,
                                                          shape_bits=10, color_per_gaussian=True, color_bits=10)),
        # Texture sections of a few hundred bytes for millions of latents: at the largest output a server
        # renders (refused by the evaluation budget before a latent is decoded), and at the largest it admits.
        "texture_server_size.gsi": write_bitstream(gaussians(side, side, 0, 1.0), write_texture(blank_texture(side, side))),
        "texture_at_budget.gsi": write_bitstream(gaussians(textured, textured, 0, 1.0),
                                                 write_texture(blank_texture(textured, textured))),
    }


def payload_of(data: bytes) -> bytes:
    """The payload section of a file."""
    header = parse_header(data)
    start = header.side_start + header.side_length
    return data[start: start + header.payload_length]


def main() -> None:
    DIR.mkdir(parents=True, exist_ok=True)
    for name, data in files().items():
        (DIR / name).write_bytes(data)
        print(name, len(data))


if __name__ == "__main__":
    main()
