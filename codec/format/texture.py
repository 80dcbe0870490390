"""The texture layer's section of a .gsi file (format version 5, ``Flag.TEXTURE``; docs/bitstream.md).

It follows the Gaussians' payload, its length in the header. Layout:

    u32      side_length
    side     bit-packed: levels - 1 (3 bits), hidden - 1 (5 bits); per synthesis layer its exponent (4 bits)
             and its (inputs + 1) x outputs integers (weight rows, then the bias row), each as the Elias gamma
             code of zigzag(value) + 1; per latent level its model over [-LATENT_BOUND, LATENT_BOUND]
             (``codec.format.entropy.write_model``: a histogram or a two-sided geometric)
    payload  range-coded latents, level by level, row-major

Everything the range coder depends on is an integer: the models are the exact integer tables of
``codec.format.entropy``. The latent counts follow from the picture's size and the level count, and the
payload is held to them as the Gaussians' payload is (``read_payload``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from codec.errors import BitstreamError
from codec.format.entropy import BitReader, BitWriter, encode_symbols
from codec.format.entropy import read_model, read_payload, write_model
from codec.format.streams import Coded

MAX_LEVELS = 8  # the coarsest grid is 1/128 of the picture
MAX_HIDDEN = 32
LATENT_BOUND = 127  # latents are integers in [-LATENT_BOUND, LATENT_BOUND]
MAX_EXPONENT = 15  # a layer's values are its integers / 2^exponent
MAX_WEIGHT = 1 << 15  # |integer| of a weight or bias
_ALPHABET = 2 * LATENT_BOUND + 1
_SIDE_LENGTH = struct.Struct("<I")


def level_shape(height: int, width: int, level: int) -> tuple[int, int]:
    return -(-height >> level), -(-width >> level)


def layer_shapes(levels: int, hidden: int) -> list[tuple[int, int]]:  # (inputs, outputs) per layer
    return [(levels, hidden), (hidden, hidden), (hidden, 3)]


@dataclass(frozen=True)
class Texture:
    """A file's texture layer as integers (``write_texture`` and ``read_texture`` below; its pixels:
    ``codec.decode.texture``)."""

    latents: tuple[np.ndarray, ...]  # per level [h_l, w_l] int32
    weights: tuple[np.ndarray, ...]  # per layer [in + 1, out] int32: the weight rows, then the bias row
    exponents: tuple[int, ...]  # per layer: its values are the integers / 2^exponent

    @property
    def levels(self) -> int:
        return len(self.latents)

    @property
    def hidden(self) -> int:
        return self.weights[0].shape[1]

    def layers(self) -> list[tuple[np.ndarray, np.ndarray]]:  # float32 (W^T [out, in], b [out]) per layer
        out = []
        for ints, exponent in zip(self.weights, self.exponents):
            values = ints.astype(np.float32) * np.float32(2.0 ** -exponent)
            out.append((np.ascontiguousarray(values[:-1].T), values[-1]))
        return out


def latent_count(width: int, height: int, levels: int) -> int:
    return sum(h * w for h, w in (level_shape(height, width, level) for level in range(levels)))


def write_texture(texture: Texture) -> bytes:
    if not (1 <= texture.levels <= MAX_LEVELS and 1 <= texture.hidden <= MAX_HIDDEN
            and all(0 <= e <= MAX_EXPONENT for e in texture.exponents)
            and all(np.abs(w).max() <= MAX_WEIGHT for w in texture.weights)
            and all(np.abs(z).max(initial=0) <= LATENT_BOUND for z in texture.latents)):
        raise ValueError("a texture outside the format's bounds")
    side = BitWriter()
    side.write(texture.levels - 1, 3)
    side.write(texture.hidden - 1, 5)
    for ints, exponent in zip(texture.weights, texture.exponents):
        side.write(exponent, 4)
        for code in _zigzag(ints.ravel()).tolist():
            side.write_gamma(code + 1)
    coded = []
    for latent in texture.latents:
        symbols = latent.ravel().astype(np.int64) + LATENT_BOUND
        coded.append((symbols, write_model(side, symbols, _ALPHABET, parametric=True)))
    side_bytes = side.getvalue()
    return _SIDE_LENGTH.pack(len(side_bytes)) + side_bytes + encode_symbols(coded)


def texture_form(section: bytes) -> tuple[int, int]:
    """(levels, hidden) from the section's first side byte, without reading the rest."""
    if len(section) <= _SIDE_LENGTH.size:
        raise BitstreamError("texture_length", f"{len(section)} bytes cannot hold the texture's form")
    form = section[_SIDE_LENGTH.size]
    return (form >> 5) + 1, (form & 31) + 1


def read_texture(section: bytes, width: int, height: int) -> Texture:
    """What ``write_texture`` wrote, for a picture of ``width`` x ``height``; raises BitstreamError naming the
    field, before allocating anything the section's bytes do not pay for."""
    if len(section) < _SIDE_LENGTH.size:
        raise BitstreamError("texture_length", f"{len(section)} bytes cannot hold the texture's side length")
    (side_length,) = _SIDE_LENGTH.unpack_from(section)
    if side_length > len(section) - _SIDE_LENGTH.size:
        raise BitstreamError("texture.side_length", f"{side_length} bytes, but the section holds "
                                                    f"{len(section) - _SIDE_LENGTH.size} after it")
    side = BitReader(section[_SIDE_LENGTH.size: _SIDE_LENGTH.size + side_length], "texture.side_info")
    levels, hidden = side.read(3) + 1, side.read(5) + 1  # the widths allow MAX_LEVELS and MAX_HIDDEN
    weights, exponents = [], []
    for inputs, outputs in layer_shapes(levels, hidden):
        exponents.append(side.read(4))
        # each code is at least one bit, so the side's own length bounds what is read
        codes = side.read_gammas((inputs + 1) * outputs, 2 * MAX_WEIGHT + 1)
        weights.append(_unzigzag(codes - 1).reshape(inputs + 1, outputs).astype(np.int32))
    shapes = [level_shape(height, width, level) for level in range(levels)]
    columns = []
    for level, (rows, cols) in enumerate(shapes):
        model, counts, fewest = read_model(side, _ALPHABET, rows * cols, parametric=True)
        columns.append(Coded(f"texture.latents[{level}]", model, counts, fewest))
    if side.remaining_bits() >= 8:
        raise BitstreamError("texture.side_length", f"{side.remaining_bits()} bits left over after the models")
    payload = section[_SIDE_LENGTH.size + side_length:]
    decoded = read_payload(payload, columns, [rows * cols for rows, cols in shapes],
                           f"{latent_count(width, height, levels)} latents", field="texture.payload")
    latents = tuple((symbols - LATENT_BOUND).astype(np.int32).reshape(shape) for symbols, shape in zip(decoded, shapes))
    return Texture(latents=latents, weights=tuple(weights), exponents=tuple(exponents))


def weight_bits(ints: np.ndarray) -> int:
    """The side bits of a layer's integers, as ``write_texture`` codes them (Elias gamma of zigzag + 1)."""
    return int((2 * np.floor(np.log2(_zigzag(np.asarray(ints, np.int64)) + 1)) + 1).sum())


def _zigzag(values: np.ndarray) -> np.ndarray:  # signed -> 0, 1, 2, ... as 0, -1, 1, -2, ...
    return np.where(values >= 0, 2 * values, -2 * values - 1)


def _unzigzag(codes: np.ndarray) -> np.ndarray:
    return np.where(codes % 2 == 0, codes // 2, -(codes + 1) // 2)
