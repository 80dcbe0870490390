"""The texture layer (format versions 5 and 6): its section round-trips exactly, with and without context,
the trainer's upsampling is the decoder's, an encode with it decodes to better pixels than its own Gaussians
alone, views of it are views, and a damaged section is a typed error."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch

import codec
from codec.decode.texture import Taps, residual, sample
from codec.decode.view import plan_view
from codec.format.bitstream import Flag, parse_header, read_bitstream, write_bitstream
from codec.format.texture import CONTEXT_CLASSES, LATENT_BOUND, Texture, context_classes, layer_shapes, level_shape
from codec.format.texture import read_texture, write_texture
from codec.train.method import TextureConfig
from codec.train.texture import TextureModel


def _texture(width: int, height: int, levels: int = 3, hidden: int = 4, seed: int = 0) -> Texture:
    rng = np.random.default_rng(seed)
    latents = tuple(np.clip(np.round(rng.laplace(0, 2 + level, level_shape(height, width, level))), -LATENT_BOUND,
                            LATENT_BOUND).astype(np.int32) for level in range(levels))
    weights = tuple(rng.integers(-300, 300, (inputs + 1, outputs)).astype(np.int32)
                    for inputs, outputs in layer_shapes(levels, hidden))
    return Texture(latents=latents, weights=weights, exponents=(9, 8, 10))


def test_a_texture_section_round_trips_exactly():
    texture = _texture(37, 23)
    back = read_texture(write_texture(texture), 37, 23)
    assert back.exponents == texture.exponents
    assert all(np.array_equal(a, b) for a, b in zip(back.latents, texture.latents))
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, texture.weights))


def test_a_level_coded_by_context_round_trips_in_fewer_bytes():
    """Latents large where their neighbours are and zero elsewhere (as texture makes them): the checkerboard's
    second half by its neighbours' magnitude costs less than one model, and decodes to the same integers."""
    rng = np.random.default_rng(3)
    height, width = 64, 96
    busy = np.zeros((height, width), bool)
    busy[:, : width // 3] = True
    busy[20:40, 50:80] = True
    latent = np.where(busy, np.clip(np.round(rng.laplace(0, 3, busy.shape)), -LATENT_BOUND, LATENT_BOUND), 0)
    texture = Texture(latents=(latent.astype(np.int32),), weights=_texture(width, height, levels=1).weights,
                      exponents=(9, 8, 10))
    plain, by_context = write_texture(texture, contexts=False), write_texture(texture)
    assert len(by_context) < 0.9 * len(plain)
    assert np.array_equal(read_texture(by_context, width, height).latents[0], latent)
    assert np.array_equal(read_texture(plain, width, height, contexts=False).latents[0], latent)
    # a level where context does not pay stays one model: one bit more than the version 5 section, at most
    flat = _texture(width, height, levels=1)
    assert len(write_texture(flat)) <= len(write_texture(flat, contexts=False)) + 1
    assert np.array_equal(read_texture(write_texture(flat), width, height).latents[0], flat.latents[0])


def test_context_classes_come_from_the_first_half_only():
    latent = np.arange(-10, 10).reshape(4, 5)
    first_half = (np.indices(latent.shape).sum(0) % 2) == 0
    classes = context_classes(latent)
    assert np.array_equal(classes, context_classes(np.where(first_half, latent, 0)))
    assert classes.shape == ((~first_half).sum(),)
    assert classes.min() >= 0 and classes.max() == CONTEXT_CLASSES - 1
    assert context_classes(np.zeros((3, 3), np.int64)).tolist() == [0, 0, 0, 0]


def test_the_trainers_upsampling_is_the_decoders():
    """Training samples the grids with torch's bilinear upsampling; the decoder with its own taps: the same
    places and weights, so the same residual up to float rounding."""
    height, width = 45, 70  # not multiples of the coarse levels' factors
    model = TextureModel(height, width, TextureConfig(levels=4, hidden=8), torch.Generator().manual_seed(1),
                         torch.device("cpu"))
    with torch.no_grad():
        for z in model.latents:
            z.copy_(torch.randn(z.shape, generator=torch.Generator().manual_seed(z.numel())) * 3)
        trained = model.residual(list(model.latents), model.layers()).numpy()
    rows, cols = np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64)
    z = model.latents[3].detach().numpy()
    sampled = sample(z, Taps.at(rows, 3, z.shape[0]), Taps.at(cols, 3, z.shape[1]))
    upsampled = torch.nn.functional.interpolate(torch.as_tensor(z)[None, None], scale_factor=8, mode="bilinear",
                                                align_corners=False, recompute_scale_factor=False)[0, 0, :height, :width]
    np.testing.assert_allclose(sampled, upsampled.numpy(), atol=1e-5)
    ints = Texture(latents=tuple(z.detach().numpy().astype(np.int32) for z in model.latents), weights=(), exponents=())
    assert ints.levels == 4 and trained.shape == (height, width, 3)


@pytest.fixture(scope="module")
def textured(kodim_crop):
    """An encode at 0.5 bpp of a 256 x 256 crop, short, and the same file without its texture section."""
    options = codec.EncodeOptions(bpp=0.5, iterations=150, seed=1)
    data = codec.encode(kodim_crop, options=options)
    gaussians_only = write_bitstream(read_bitstream(data))
    return kodim_crop, data, gaussians_only


def test_an_encode_with_the_layer_is_version_6_within_its_target_and_better_than_its_gaussians(textured):
    pixels, data, gaussians_only = textured
    header = parse_header(data)
    assert header.version == 6 and header.texture_length > 0 and header.texture_context
    assert len(data) * 8 <= 0.5 * pixels.shape[0] * pixels.shape[1]
    decoded = codec.decode(data)
    assert np.array_equal(decoded, codec.decode(data))  # deterministic
    assert codec.psnr(pixels, decoded) > codec.psnr(pixels, codec.decode(gaussians_only)) + 0.1
    assert parse_header(gaussians_only).version == 4


def test_views_of_a_textured_file(textured):
    pixels, data, _ = textured
    full = codec.decode(data).astype(np.float64)
    assert np.array_equal(codec.decode(data, box=(30, 40, 130, 90)), full[40:90, 30:130])
    half = codec.decode(data, width=128).astype(np.float64)
    area = full.reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
    assert np.abs(half - area).mean() < 1.5  # an area downsample of the full decode, up to the Gaussians' own
    assert codec.decode(data, scale=1.5).shape == (384, 384, 3)


def test_the_residual_of_a_shrinking_view_is_the_area_mean_of_the_full_one():
    texture = _texture(64, 48)
    full = residual(texture, plan_view(64, 48))
    half = residual(texture, plan_view(64, 48, width=32))
    np.testing.assert_allclose(half, full.reshape(24, 2, 32, 2, 3).mean(axis=(1, 3)), atol=1e-5)


def _resealed(data: bytes, offset: int, new: bytes) -> bytes:
    body = bytearray(data[:-4])
    body[offset: offset + len(new)] = new
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


@pytest.mark.parametrize("damage", ["side_length", "payload_byte", "truncated"])
def test_a_damaged_texture_section_is_a_typed_error(textured, damage):
    _, data, _ = textured
    header = parse_header(data)
    start = header.texture_start
    if damage == "side_length":
        bad = _resealed(data, start, struct.pack("<I", header.texture_length))
    elif damage == "payload_byte":
        end = start + header.texture_length
        bad = _resealed(data, end - 3, bytes([data[end - 3] ^ 0x5A]))
    else:  # the section's length shortened, the file with it
        body = bytearray(data[:start + header.texture_length - 4])
        at = start - header.side_length - header.payload_length - 4
        body[at: at + 4] = struct.pack("<I", header.texture_length - 4)
        bad = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    with pytest.raises(codec.BitstreamError) as raised:
        codec.decode(bad)
    assert raised.value.field.startswith("texture")


def test_a_texture_flag_in_an_older_version_is_refused(textured):
    _, data, _ = textured
    for version, needs in ((4, 5), (5, 6)):
        with pytest.raises(codec.BitstreamError, match=f"needs version {needs}"):
            codec.decode(_resealed(data, 4, bytes([version])))  # the version byte
    assert (Flag.TEXTURE, Flag.TEXTURE_CONTEXT) == (64, 128)


def test_a_texture_context_without_a_texture_is_refused(textured):
    _, _, gaussians_only = textured
    flags = gaussians_only[5]
    with pytest.raises(codec.BitstreamError, match="needs a texture section"):
        codec.decode(_resealed(gaussians_only, 4, bytes([6, flags | Flag.TEXTURE_CONTEXT])))


def test_a_version_5_file_still_decodes(textured):
    """Version 5's section has no context bits: the same layer written so decodes to the same pixels."""
    _, data, _ = textured
    header = parse_header(data)
    texture = read_texture(data[header.texture_start: header.texture_start + header.texture_length], 256, 256)
    v6 = write_bitstream(read_bitstream(data), write_texture(texture))
    v5 = write_bitstream(read_bitstream(data), write_texture(texture, contexts=False))
    v5 = _resealed(v5, 4, bytes([5, v5[5] & ~Flag.TEXTURE_CONTEXT]))
    assert parse_header(v5).version == 5 and not parse_header(v5).texture_context
    assert np.array_equal(codec.decode(v5), codec.decode(v6))
    assert np.array_equal(codec.decode(v6), codec.decode(data))


def test_the_same_seed_gives_the_same_textured_file(textured):
    pixels, data, _ = textured
    assert codec.encode(pixels, options=codec.EncodeOptions(bpp=0.5, iterations=150, seed=1)) == data
