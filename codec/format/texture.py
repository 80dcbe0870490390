"""The texture layer's section of a .gsi file (format versions 5 and 6, ``Flag.TEXTURE``; docs/bitstream.md).

It follows the Gaussians' payload, its length in the header. Layout:

    u32      side_length
    side     bit-packed: levels - 1 (3 bits), hidden - 1 (5 bits); per synthesis layer its exponent (4 bits)
             and its (inputs + 1) x outputs integers (weight rows, then the bias row), each as the Elias gamma
             code of zigzag(value) + 1; per latent level (from version 6, ``Flag.TEXTURE_CONTEXT``, after a
             context bit) its model over [-LATENT_BOUND, LATENT_BOUND] (``codec.format.entropy.write_model``: a
             histogram or a two-sided geometric), or with the context bit set the model of its checkerboard's
             first half and one two-sided geometric per context class of the second half
    payload  range-coded latents, level by level: row-major, or with context the first half row-major, then
             the second half class by class, row-major within each

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
from codec.format.entropy import Geometric, model_bits, read_geometric, read_model, read_payload, write_geometric
from codec.format.entropy import geometric_side_bits, write_model
from codec.format.streams import Coded

MAX_LEVELS = 8  # the coarsest grid is 1/128 of the picture
MAX_HIDDEN = 32
LATENT_BOUND = 127  # latents are integers in [-LATENT_BOUND, LATENT_BOUND]
MAX_EXPONENT = 15  # a layer's values are its integers / 2^exponent
MAX_WEIGHT = 1 << 15  # |integer| of a weight or bias
# A level's checkerboard second half (row + column odd) is coded by the sum of its four neighbours' |latent|
# (first half, so decoded before it; 0 outside the grid): classes 0, 1 and 2 or more. The classes come from
# latents already decoded, so each class is one run of symbols under one model and the decode stays vectorised.
CONTEXT_CLASSES = 3
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


def write_texture(texture: Texture, contexts: bool = True) -> bytes:
    """The section; ``contexts`` (version 6): each level coded by context where that costs fewer bits."""
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
        symbols = latent.astype(np.int64) + LATENT_BOUND
        halves = _halves(symbols) if contexts else None
        if contexts:
            side.write(int(halves is not None), 1)
        if halves is None:
            coded.append((symbols.ravel(), write_model(side, symbols.ravel(), _ALPHABET, parametric=True)))
            continue
        first, classes = halves
        coded.append((first, write_model(side, first, _ALPHABET, parametric=True)))
        coded.extend((group, write_geometric(side, model, _ALPHABET)) for group, model in classes)
    side_bytes = side.getvalue()
    return _SIDE_LENGTH.pack(len(side_bytes)) + side_bytes + encode_symbols(coded)


def _halves(symbols: np.ndarray):  # [h, w] -> (first half, [(class's symbols, its model)]) or None
    """A level's checkerboard split, when it costs fewer bits than the level under one model."""
    first_half = _first_half(symbols.shape)
    first = symbols[first_half]
    classes = context_classes(np.where(first_half, symbols - LATENT_BOUND, 0))
    second = symbols[~first_half]
    groups = [second[classes == k] for k in range(CONTEXT_CLASSES)]
    models = [Geometric.fit(np.bincount(group, minlength=_ALPHABET)) for group in groups]
    split = model_bits(np.bincount(first, minlength=_ALPHABET), True) + sum(
        bits + geometric_side_bits(_ALPHABET) for _, bits in models)
    if split >= model_bits(np.bincount(symbols.ravel(), minlength=_ALPHABET), True):
        return None
    return first, [(group, model) for group, (model, _) in zip(groups, models)]


def _first_half(shape: tuple[int, int]) -> np.ndarray:  # [h, w] bool: row + column even
    rows, cols = np.indices(shape)
    return (rows + cols) % 2 == 0


def context_classes(first: np.ndarray) -> np.ndarray:  # [h, w] latents, 0 off the first half -> [second half]
    """Each second-half latent's class, row-major, from the first half's latents around it."""
    padded = np.pad(np.abs(first.astype(np.int64)), 1)
    around = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    return np.minimum(around[~_first_half(first.shape)], CONTEXT_CLASSES - 1)


def texture_form(section: bytes) -> tuple[int, int]:
    """(levels, hidden) from the section's first side byte, without reading the rest."""
    if len(section) <= _SIDE_LENGTH.size:
        raise BitstreamError("texture_length", f"{len(section)} bytes cannot hold the texture's form")
    form = section[_SIDE_LENGTH.size]
    return (form >> 5) + 1, (form & 31) + 1


def read_texture(section: bytes, width: int, height: int, contexts: bool = True) -> Texture:
    """What ``write_texture`` wrote (``contexts``: version 6 on), for a picture of ``width`` x ``height``; raises
    BitstreamError naming the field, before allocating anything the section's bytes do not pay for."""
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
    columns, counts, splits = [], [], []  # splits: per level, its _Split when coded by context, else None
    for level, (rows, cols) in enumerate(shapes):
        name = f"texture.latents[{level}]"
        if not (contexts and side.read(1)):
            model, histogram, fewest = read_model(side, _ALPHABET, rows * cols, parametric=True)
            splits.append(None)
            columns.append(Coded(name, model, histogram, fewest))
            counts.append(rows * cols)
            continue
        first_count = (rows * cols + 1) // 2
        model, histogram, fewest = read_model(side, _ALPHABET, first_count, parametric=True)
        split = _Split((rows, cols), len(columns))
        splits.append(split)
        columns.append(Coded(f"{name}.first_half", model, histogram, fewest))
        counts.append(first_count)
        classes = [read_geometric(side, _ALPHABET) for _ in range(CONTEXT_CLASSES)]
        # the classes' counts are known only once the first half is decoded: the bound takes the cheapest
        least = (rows * cols - first_count) * min(bits for _, bits in classes)
        for k, (model, _) in enumerate(classes):
            columns.append(Coded(f"{name}.class[{k}]", model, None, least if k == 0 else 0.0))
            counts.append(split.count(k))
    if side.remaining_bits() >= 8:
        raise BitstreamError("texture.side_length", f"{side.remaining_bits()} bits left over after the models")
    payload = section[_SIDE_LENGTH.size + side_length:]
    decoded = read_payload(payload, columns, counts, f"{latent_count(width, height, levels)} latents",
                           field="texture.payload")
    latents, at = [], 0
    for shape, split in zip(shapes, splits):
        if split is None:
            latents.append(decoded[at].reshape(shape) - LATENT_BOUND)
            at += 1
        else:
            latents.append(split.joined(decoded) - LATENT_BOUND)
            at += 1 + CONTEXT_CLASSES
    return Texture(latents=tuple(z.astype(np.int32) for z in latents), weights=tuple(weights),
                   exponents=tuple(exponents))


class _Split:
    """A level coded by context, as read: its first half's column, then one column per class. The classes
    are computed once, when the first half is decoded (``read_payload`` asks the classes' counts then)."""

    def __init__(self, shape: tuple[int, int], first_column: int):
        self.shape, self.first_column = shape, first_column
        self._first_half: np.ndarray | None = None  # [h, w] bool
        self._grid: np.ndarray | None = None  # [h, w] symbols, the first half placed, 0 elsewhere
        self._classes: np.ndarray | None = None  # [second half]

    def count(self, k: int):  # -> (decoded columns -> the count of class k)
        def of(decoded: list[np.ndarray]) -> int:
            self._place(decoded[self.first_column])
            return int(np.count_nonzero(self._classes == k))
        return of

    def joined(self, decoded: list[np.ndarray]) -> np.ndarray:  # [h, w] the level's symbols
        self._place(decoded[self.first_column])
        second = np.empty(len(self._classes), np.int64)
        for k in range(CONTEXT_CLASSES):
            second[self._classes == k] = decoded[self.first_column + 1 + k]
        self._grid[~self._first_half] = second
        return self._grid

    def _place(self, first: np.ndarray) -> None:
        if self._classes is None:
            self._first_half = _first_half(self.shape)
            self._grid = np.zeros(self.shape, np.int64)
            self._grid[self._first_half] = first
            self._classes = context_classes(np.where(self._first_half, self._grid - LATENT_BOUND, 0))


def weight_bits(ints: np.ndarray) -> int:
    """The side bits of a layer's integers, as ``write_texture`` codes them (Elias gamma of zigzag + 1)."""
    return int((2 * np.floor(np.log2(_zigzag(np.asarray(ints, np.int64)) + 1)) + 1).sum())


def _zigzag(values: np.ndarray) -> np.ndarray:  # signed -> 0, 1, 2, ... as 0, -1, 1, -2, ...
    return np.where(values >= 0, 2 * values, -2 * values - 1)


def _unzigzag(codes: np.ndarray) -> np.ndarray:
    return np.where(codes % 2 == 0, codes // 2, -(codes + 1) // 2)
