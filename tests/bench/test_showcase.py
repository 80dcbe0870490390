"""The README's picture: ours beside JPEG and WebP files no larger than ours, labelled with what they measure, and
crops pasted at 1:1."""

import re
from pathlib import Path

import numpy as np

import codec
from bench import showcase
from bench.baselines import load_rgb

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LABEL = re.compile(r"^([\d,]+) bytes, ([\d.]+) bpp, ([\d.]+) dB$")


def test_baselines_are_no_larger_than_ours_and_the_labels_say_what_was_measured():
    original = load_rgb(FIXTURES / "kodim23_crop96x64.png")
    data = codec.encode(original, options=codec.EncodeOptions(bpp=1.0, iterations=30, seed=0, device="cpu"))
    items = showcase.panels(original, data)
    assert [item.title.split()[0] for item in items] == ["original", "gsic", "JPEG", "WebP"]
    assert (items[0].pixels == original).all()
    sizes = []
    for item in items[1:]:
        size, bpp, psnr = LABEL.match(item.caption).groups()
        sizes.append(int(size.replace(",", "")))
        assert float(bpp) == round(sizes[-1] * 8 / (96 * 64), 3)
        assert float(psnr) == round(codec.psnr(original, item.pixels), 2)
    assert sizes[0] == len(data) and max(sizes[1:]) <= len(data)
    assert (items[1].pixels == codec.decode(data)).all()


def test_the_sheet_shows_each_crop_at_one_to_one_under_its_whole_image():
    rng = np.random.default_rng(0)
    items = [showcase.Panel(f"p{k}", rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), "caption") for k in range(3)]
    crop = (16, 8, 48, 40)
    sheet = np.asarray(showcase.compose(items, crop))
    top = showcase.LABEL_HEIGHT + 64 // 2 + showcase.GAP
    assert sheet.shape == (top + 32, 3 * 48 + 2 * showcase.GAP, 3)
    for k, item in enumerate(items):
        x = k * (48 + showcase.GAP)
        assert (sheet[top:top + 32, x:x + 32] == item.pixels[8:40, 16:48]).all()
