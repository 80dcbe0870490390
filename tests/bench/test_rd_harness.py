"""The rate–distortion harness: the paper table, the Pillow sweeps, the analysis and a tiny resumable run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import baselines
from bench.paths import PAPER_TABLE
from bench.rd import cli
from bench.rd.analysis import analyse, parse_paper_time
from bench.rd.plan import ImageInfo, row_key
from bench.rd.report import deltas, deltas_table, standing, verdicts
from bench.rd.store import append_rows, load_results

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

SMALL_TABLE = """# Table

| image | PSNR a | bpp a | PSNR b | bpp b |
|---|---|---|---|---|
| kodim01 | 19.193 | 0.042 | 19.869 | 0.064 |
| **average** | 20.735 | 0.042 | 21.801 | 0.066 |

| codec | encode s | decode s |
|---|---|---|
| the paper's 2DGS codec | 250.43 | 0.0224 |
"""


def test_paper_table_parser_on_a_small_table(tmp_path):
    path = tmp_path / "t.md"
    path.write_text(SMALL_TABLE)
    table = baselines.parse_paper_table(path)
    assert table == {"kodim01": [(0.042, 19.193), (0.064, 19.869)], "average": [(0.042, 20.735), (0.066, 21.801)]}
    assert parse_paper_time(path) == 250.43


def test_paper_table_parser_on_the_paper():
    if not PAPER_TABLE.exists():
        pytest.skip(f"no {PAPER_TABLE}")
    table = baselines.parse_paper_table(PAPER_TABLE)
    assert len(table) == 25  # 24 images and the average
    assert table["kodim01"][0] == (0.042, 19.193)
    assert table["kodim05"] == [(0.040, 16.625), (0.067, 17.541), (0.120, 18.702), (0.174, 19.574)]
    assert table["kodim23"][3] == (0.189, 26.152)
    assert table["average"][2] == (0.125, 23.164)


@pytest.mark.parametrize("name", sorted(baselines.CODECS))
def test_baseline_sweep_gives_rising_rates_and_resumes(name, require_codec):
    codec = baselines.CODECS[name]
    require_codec(codec)
    image = baselines.load_rgb(FIXTURES / "kodim23_crop96x64.png")
    points = list(baselines.sweep(codec, image, max_rate=2.0, threads=1))
    assert len(points) >= 3
    rates = [p["bpp"] for p in points]
    assert all(b >= 0.9 * max(rates[:k + 1]) for k, b in enumerate(rates))  # monotone-ish in quality
    assert rates[-1] > 2.0 or len(points) == len(codec.qualities)  # stops at the first point above the top
    assert rates[-1] > rates[0] and points[-1]["psnr"] > points[0]["psnr"]
    for p in points:  # real file sizes, measured on the decoded file
        assert p["bpp"] == pytest.approx(p["bytes"] * 8 / (96 * 64))
        assert 10 < p["psnr"] < 60
    done = {p["quality"]: p for p in points}
    assert baselines.sweep_complete(codec, done, 2.0)
    assert list(baselines.sweep(codec, image, 2.0, done)) == []  # nothing left to encode


def _row(image, bpp, psnr, codec="jpeg", **extra):
    return {"codec": codec, "image": image, "width": 768, "height": 512, "quality": extra.pop("quality", 0),
            "bpp": bpp, "psnr": psnr, "ms_ssim": None, "encode_s": 0.01, "decode_s": 0.01, **extra}


def _ours(image, target, bpp, psnr):
    return _row(image, bpp, psnr, codec="ours", method="default", iterations=None, seed=0, target_bpp=target,
                n_gaussians=100, device="cpu")


def _two_images(rates):
    """JPEG sweeps over 0.1-0.3 bpp (image a) and 0.2-0.4 (b); ours at 0.25 and 0.5; the paper on a only."""
    images = [ImageInfo("a", Path("a.png"), 768, 512), ImageInfo("b", Path("b.png"), 768, 512)]
    rows = [_row("a", 0.1, 20.0, quality=1), _row("a", 0.3, 30.0, quality=2),
            _row("b", 0.2, 24.0, quality=1), _row("b", 0.4, 28.0, quality=2),
            _ours("a", 0.25, 0.24, 27.0), _ours("b", 0.25, 0.26, 25.0), _ours("a", 0.5, 0.5, 31.0),
            _ours("b", 0.5, 0.49, 29.0)]
    rows = {row_key(r): r for r in rows}
    paper = {"a": [(0.1, 21.0), (0.2, 23.0)]}
    return analyse(rows, images, rates, ["default"], ["ours", "jpeg"], None, 0, paper)


def test_analysis_averages_interpolated_curves_and_says_na_when_one_image_falls_short():
    a = _two_images([0.15, 0.25, 0.5])
    assert a.at("psnr", "jpeg", "a", 0.25) == pytest.approx(27.5)
    assert a.at("psnr", "jpeg", "b", 0.25) == pytest.approx(25.0)
    assert a.average("psnr", "jpeg", 0.25) == pytest.approx(26.25)
    assert a.average("psnr", "jpeg", 0.15) is None  # image b's sweep starts at 0.2
    assert a.average("psnr", "paper", 0.15) is None  # image b is not in the paper's table
    # ours: a at 0.25 between 0.24 and 0.5; b at 0.25 extrapolated below its lowest point (0.26, within 10%)
    assert a.at("psnr", "ours:default", "a", 0.25) == pytest.approx(27.0 + 4.0 * 0.01 / 0.26)
    assert a.at("psnr", "ours:default", "b", 0.25) == pytest.approx(25.0 - 4.0 * 0.01 / 0.23)
    lines = verdicts(a)
    assert lines[1].startswith("- **0.25 bpp**: ours ")
    assert "paper n/a" in lines[1] and "JPEG 26.25 (" in lines[1]


def test_deltas_average_over_the_images_both_reach_and_standing_says_where_ours_is_behind():
    a = _two_images([0.25, 0.38, 0.5])
    ours_a, ours_b = 27.0 + 4.0 * 0.01 / 0.26, 25.0 - 4.0 * 0.01 / 0.23  # as in the test above
    mean, n = deltas(a, "ours:default", 0.25)["jpeg"]
    assert n == 2 and mean == pytest.approx(((ours_a - 27.5) + (ours_b - 25.0)) / 2)
    mean, n = deltas(a, "ours:default", 0.38)["jpeg"]  # image a's sweep ends at 0.3
    assert n == 1 and mean == pytest.approx((25.0 + 4.0 * 0.12 / 0.23) - (24.0 + 4.0 * 0.18 / 0.2))
    assert deltas(a, "ours:default", 0.5)["jpeg"] == (None, 0)
    assert standing(a) == ["- paper reaches none of these rates", "- **behind JPEG** at every rate it reaches"]
    table = deltas_table(a)[0].splitlines()
    assert table[0] == "| rate (bpp) | ours dB | ours real bpp | vs paper | vs JPEG |"
    assert table[3] == "| 0.38 | 28.12 | n/a | n/a (0) | -0.51 (1) |"  # (29.154 + 27.087) / 2; no encode aimed there


def test_results_loader_skips_a_torn_line_and_keeps_the_last_duplicate(tmp_path):
    path = tmp_path / "r.jsonl"
    first, second = _ours("a", 0.1, 0.1, 20.0), _ours("a", 0.1, 0.1, 21.0)
    append_rows(path, [first, second, _row("a", 0.2, 22.0, quality=5)])
    with path.open("a") as handle:
        handle.write('{"codec": "ours", "ima')
    rows = load_results(path)
    assert len(rows) == 2
    assert rows[row_key(first)]["psnr"] == 21.0


def _harness_args(tmp_path, *extra):
    return ["--data", str(FIXTURES), "--images", "kodim05_crop64x48,kodim23_crop96x64", "--rates", "0.5",
            "--iterations", "3", "--method", "default,paper",
            "--results", str(tmp_path / "results.jsonl"), "--benchmarks", str(tmp_path / "BENCHMARKS.md"),
            "--plots-dir", str(tmp_path / "plots"), *extra]


def test_tiny_run_writes_rows_resumes_and_reports(tmp_path, monkeypatch, require_codec):
    for codec in baselines.CODECS.values():  # the default run has all of them
        require_codec(codec)
    real_benchmarks = cli.BENCHMARKS
    before = real_benchmarks.read_text() if real_benchmarks.exists() else None

    assert cli.main(_harness_args(tmp_path)) == 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    ours = [r for r in rows if r["codec"] == "ours"]
    assert len(ours) == 4  # two crops x two methods x one rate
    assert {r["method"] for r in ours} == {"default", "paper"}
    for r in ours:
        assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (r["width"] * r["height"]))
        assert np.isfinite(r["psnr"]) and r["encode_s"] > 0 and r["decode_s"] > 0 and r["n_gaussians"] > 0
        assert r["deterministic"] is True
    assert {r["codec"] for r in rows} == {"ours", *baselines.CODECS}

    # A second run encodes nothing: every codec is made to fail if it is called.
    import codec

    def refuse(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr(codec, "encode_with_report", refuse)
    monkeypatch.setattr(baselines, "sweep_point", refuse)
    assert cli.main(_harness_args(tmp_path)) == 0
    assert (tmp_path / "results.jsonl").read_text().splitlines() == lines

    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- BEGIN rd-kodak -->" in text and "<!-- END rd-kodak -->" in text
    assert "| rate (bpp) | ours | ours real bpp | ours (paper config) |" in text
    assert "| 0.5 |" in text and "**0.5 bpp**: ours " in text
    assert "Reproduce: `python -m bench.rd --data " in text
    assert "![RD: PSNR and MS-SSIM vs bpp](plots/rd-kodak-rd.png)" in text
    assert (tmp_path / "plots" / "rd-kodak-rd.png").stat().st_size > 0
    assert (tmp_path / "plots" / "rd-kodak-time.png").stat().st_size > 0
    # the real BENCHMARKS.md is untouched
    assert (real_benchmarks.read_text() if real_benchmarks.exists() else None) == before


def test_no_write_prints_the_section_and_writes_no_markdown(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    rows = [_row("kodim05_crop64x48", 0.4, 25.0, quality=1) | {"width": 64, "height": 48},
            _row("kodim05_crop64x48", 0.6, 28.0, quality=2) | {"width": 64, "height": 48}]
    append_rows(results, rows)
    code = cli.main(["--data", str(FIXTURES), "--images", "kodim05_crop64x48", "--rates", "0.5", "--codecs", "jpeg",
                    "--results", str(results), "--benchmarks", str(tmp_path / "B.md"), "--report-only",
                    "--no-write", "--section", "rd-test"])
    assert code == 0
    out = capsys.readouterr().out
    assert "## Rate–distortion on" in out and "(rd-test)" in out
    assert "| 0.5 | 26.50 |" in out  # JPEG interpolated half way between 0.4 and 0.6
    assert not (tmp_path / "B.md").exists()


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        cli.main(["--method", "fast"])
    with pytest.raises(SystemExit):
        cli.main(["--rates", "0,0.1"])
    with pytest.raises(SystemExit):
        cli.main(["--data", str(FIXTURES), "--images", "kodim99", "--no-write"])


def test_python_dash_m_bench_rd_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "bench.rd", "--method", "fast"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.returncode == 2
    assert "usage: python -m bench.rd" in done.stderr
    assert "--method must be from default, paper, got fast" in done.stderr
