"""gsic encode / info / decode round trip through the real console entry point."""

import json

import numpy as np
from PIL import Image

import codec
from cli.main import main

FIXTURE = "tests/fixtures/kodim23_crop96x64.png"


def test_cli_roundtrip(tmp_path, capsys, crop):
    bitstream, png = tmp_path / "crop.gsi", tmp_path / "crop.png"
    assert main(["encode", FIXTURE, str(bitstream), "--bpp", "1.0", "--iterations", "30", "--quiet"]) == 0
    encode_line = capsys.readouterr().out
    assert "bpp" in encode_line and "PSNR" in encode_line
    assert main(["info", str(bitstream)]) == 0
    header = json.loads(capsys.readouterr().out)
    assert header["width"] == 96 and header["height"] == 64
    assert main(["decode", str(bitstream), str(png)]) == 0
    decoded = np.asarray(Image.open(png).convert("RGB"))
    assert np.array_equal(decoded, codec.decode(bitstream.read_bytes()))
    assert codec.psnr(crop, decoded) > 18  # 30 iterations: measured 20.4 dB


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.gsi"
    bad.write_bytes(b"not a bitstream at all, really not" * 4)
    assert main(["decode", str(bad), str(tmp_path / "out.png")]) == 2
    assert "magic" in capsys.readouterr().err
