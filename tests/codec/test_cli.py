"""gsic encode / info / decode round trip through the real console entry point."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from cli.main import main

FIXTURE = "tests/fixtures/kodim23_crop96x64.png"
REPO = Path(__file__).resolve().parents[2]


def test_cli_roundtrip(tmp_path, capsys, crop):
    bitstream, png = tmp_path / "crop.gsi", tmp_path / "crop.png"
    assert main(["encode", FIXTURE, str(bitstream), "--bpp", "1.0", "--iterations", "80", "--quiet"]) == 0
    encode_line = capsys.readouterr().out
    assert "bpp" in encode_line and "PSNR" in encode_line
    assert main(["info", str(bitstream)]) == 0
    header = json.loads(capsys.readouterr().out)["header"]
    assert header["width"] == 96 and header["height"] == 64
    assert main(["decode", str(bitstream), str(png)]) == 0
    decoded = np.asarray(Image.open(png).convert("RGB"))
    assert np.array_equal(decoded, codec.decode(bitstream.read_bytes()))
    # 80 iterations: measured 23.6 dB (per-Gaussian colours need more than 30 steps: 15.4 dB there)
    assert codec.psnr(crop, decoded) > 18


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.gsi"
    bad.write_bytes(b"not a bitstream at all, really not" * 4)
    assert main(["decode", str(bad), str(tmp_path / "out.png")]) == 2
    assert "magic" in capsys.readouterr().err


def test_the_program_ends_a_decode_without_teardown_yet_loses_no_output(tmp_path, encoded):
    bitstream, png, bad = tmp_path / "x.gsi", tmp_path / "x.png", tmp_path / "bad.gsi"
    bitstream.write_bytes(encoded.data)
    bad.write_bytes(encoded.data[:20])

    def gsic(*args: str) -> subprocess.CompletedProcess:  # a fresh process, as the console script runs it
        return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=300)

    done = gsic("decode", str(bitstream), str(png))
    assert done.returncode == 0 and f"{png}: 96x64 in" in done.stdout
    assert np.array_equal(np.asarray(Image.open(png)), codec.decode(encoded.data))
    failed = gsic("decode", str(bad), str(png))
    assert failed.returncode == 2 and failed.stderr.startswith("gsic decode: error:")
    info = gsic("info", str(bitstream))
    assert info.returncode == 0 and json.loads(info.stdout)["bytes"] == len(encoded.data)


def test_cli_decodes_at_a_size_and_a_region(tmp_path, capsys, encoded):
    bitstream = tmp_path / "crop.gsi"
    bitstream.write_bytes(encoded.data)
    thumb, region = tmp_path / "thumb.png", tmp_path / "region.png"
    assert main(["decode", str(bitstream), str(thumb), "--width", "48"]) == 0
    assert np.array_equal(np.asarray(Image.open(thumb)), codec.decode(encoded.data, width=48))
    assert main(["decode", str(bitstream), str(region), "--box", "10,5,42,37", "--scale", "2"]) == 0
    assert np.asarray(Image.open(region)).shape == (64, 64, 3)
    assert "64x64" in capsys.readouterr().out
    assert main(["decode", str(bitstream), str(region), "--box", "0,0,200,10"]) == 2
    assert "box:" in capsys.readouterr().err


def test_cli_info_gives_size_bpp_and_the_bits_of_each_part(tmp_path, capsys, encoded):
    bitstream = tmp_path / "crop.gsi"
    bitstream.write_bytes(encoded.data)
    assert main(["info", str(bitstream)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"] == len(encoded.data) and info["bpp"] == pytest.approx(encoded.bpp, abs=1e-6)
    assert set(info["bits"]) == {"header", "side_information", "positions", "shapes", "colors"}
    assert sum(info["bits"].values()) == 8 * len(encoded.data)
    assert all(bits > 0 for bits in info["bits"].values())
    assert info["header"]["n_gaussians"] == encoded.n_gaussians


def test_cli_encode_checks_the_output_before_encoding(tmp_path, capsys, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the encode ran although the output cannot be written")

    monkeypatch.setattr(codec, "encode_with_report", must_not_run)
    assert main(["encode", FIXTURE, str(tmp_path / "nodir" / "x.gsi"), "--quiet"]) == 2
    assert f"directory {tmp_path / 'nodir'} does not exist" in capsys.readouterr().err
    assert main(["encode", FIXTURE, str(tmp_path), "--quiet"]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_cli_encode_help_lists_the_range_presets_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{codec.MIN_BPP} to {codec.MAX_BPP}" in text
    assert all(f"{name} = {bpp} bpp" in text for name, bpp in codec.RATE_PRESETS.items())
    assert f"default: {codec.METHODS['default'].schedule.iterations} to 3600, more for denser sets, for default" in text
    assert f"{codec.METHODS['paper'].schedule.iterations} for paper" in text and "default 0" in text
