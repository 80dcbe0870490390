"""The JPEG 2000, JPEG XL and HEIF baselines: real round trips at a target rate, and a missing plugin."""

import dataclasses
import io
from pathlib import Path

import pytest
from PIL import Image

from bench import baselines
from bench.baselines import CodecUnavailable
from bench.metrics import interpolate
from bench.rd import cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CROP = "kodim23_crop96x64"
NEW = ("jpeg2000", "jxl", "heif")


@pytest.mark.parametrize("name", NEW)
def test_new_codec_lands_at_or_under_the_rate_with_a_plausible_psnr(name, require_codec):
    codec = baselines.CODECS[name]
    require_codec(codec)
    image = baselines.load_rgb(FIXTURES / f"{CROP}.png")
    target = 1.0
    points = list(baselines.sweep(codec, image, max_rate=target, threads=1))
    assert points[-1]["bpp"] > target  # the knob reaches past the rate, so the rate is bracketed
    under = [p for p in points if p["bpp"] <= target]
    assert under, f"{name}: no point at or under {target} bpp: {[p['bpp'] for p in points]}"
    best = max(under, key=lambda p: p["bpp"])
    assert best["psnr"] > 30.0  # a codec that works; the crop is smooth (JPEG gets 41–42 dB here)
    # loosely against JPEG on the same crop at the same real rate: none of these is far worse than it
    jpeg = [(p["bpp"], p["psnr"]) for p in baselines.sweep(baselines.CODECS["jpeg"], image, max_rate=2.0)]
    assert best["psnr"] > interpolate(jpeg, best["bpp"]) - 3.0
    data = codec.encode(image, best["quality"], threads=1)  # the file is really in the codec's format
    assert len(data) == best["bytes"]
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == codec.format and im.size == (96, 64)


def test_a_missing_plugin_names_its_package():
    ghost = dataclasses.replace(baselines.CODECS["jxl"], plugin="no_such_plugin_module", package="no-such-package")
    with pytest.raises(CodecUnavailable, match="JPEG XL needs the package no-such-package"):
        ghost.encode(baselines.load_rgb(FIXTURES / f"{CROP}.png"), 50)


def test_the_harness_refuses_a_codec_without_its_plugin_before_encoding(monkeypatch, capsys, tmp_path):
    ghost = dataclasses.replace(baselines.CODECS["heif"], plugin="no_such_plugin_module", package="no-such-package")
    monkeypatch.setitem(baselines.CODECS, "heif", ghost)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--data", str(FIXTURES), "--codecs", "jpeg,heif", "--results", str(tmp_path / "r.jsonl"),
                  "--no-write"])
    assert exit_info.value.code == 2
    assert "HEIF needs the package no-such-package" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()  # nothing was encoded


def test_the_harness_runs_all_six_baselines_with_their_labels(require_codec, capsys, tmp_path):
    names = ["jpeg", "webp", "avif", *NEW]
    for name in names:
        require_codec(baselines.CODECS[name])
    code = cli.main(["--data", str(FIXTURES), "--images", CROP, "--rates", "0.8", "--codecs", ",".join(names),
                     "--results", str(tmp_path / "r.jsonl"), "--no-write"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| rate (bpp) | JPEG | WebP | AVIF | JPEG 2000 | JPEG XL | HEIF |" in out
    row = next(line for line in out.splitlines() if line.startswith("| 0.8 |"))
    assert "n/a" not in row  # every codec brackets 0.8 bpp on the crop
    for name in NEW:
        assert f"- {baselines.CODECS[name].label}: {baselines.CODECS[name].description}" in out
