"""bench.cpu_kernels on a tiny image: real timings, real agreement, the section's table."""

from __future__ import annotations

from bench import cpu_kernels
from bench.report import write_section


def test_tiny_run_times_both_renderers_and_reports_agreement(capsys):
    assert cpu_kernels.main(["--sizes", "40", "--modes", "sum,alpha", "--height", "24", "--width", "40",
                             "--repeats", "1", "--no-write"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| 40 |")]
    assert [line.split("|")[2].strip() for line in table] == ["sum", "alpha"]
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(float(c) > 0 for c in cells[2:6])  # four timings
        assert float(cells[8]) < 1e-9 and float(cells[9]) < 1e-9  # numba agrees with the reference in float64


def test_write_replaces_only_its_own_section(tmp_path, monkeypatch):
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n\n<!-- BEGIN other -->\nkept\n<!-- END other -->\n")
    monkeypatch.setattr(cpu_kernels, "write_section", lambda name, text: write_section(name, text, benchmarks))
    assert cpu_kernels.main(["--sizes", "10", "--modes", "sum", "--height", "16", "--width", "16",
                             "--repeats", "1"]) == 0
    text = benchmarks.read_text()
    assert "kept" in text and "<!-- BEGIN cpu-kernels -->" in text and "| 10 | sum |" in text

