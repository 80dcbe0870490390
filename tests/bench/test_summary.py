"""BENCHMARKS.md's first page is what ``python -m bench.summary`` makes of the stored results, so it cannot drift
from the data; each set shows all of its run's measured images and rates."""

import re

from bench import summary
from bench.paths import REPO
from bench.report import BENCHMARKS


def test_benchmarks_opens_with_the_block_the_summary_generates_from_the_stored_results():
    text = BENCHMARKS.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- BEGIN summary -->\n")
    block = re.search(r"<!-- BEGIN summary -->\n(.*?)\n<!-- END summary -->", text, re.S).group(1)
    assert block == summary.render(text).strip(), "rerun `python -m bench.summary`"


def test_each_set_is_every_image_and_rate_its_run_measured_with_its_plot_and_machine():
    text = BENCHMARKS.read_text()
    for s in summary.SETS:
        args, a = s.args(), summary.analysis(s)
        assert a.rates == args.rates and a.images
        assert all(all(a.ours_at(series, rate)) for series in a.series if series.startswith("ours:")
                   for rate in a.rates), f"{args.section}: an image lacks an encode at some rate"
        if args.images:  # the images the command names, no more and no fewer
            assert a.images == sorted(args.images)
        assert (REPO / "bench" / "results" / f"{args.section}-rd.png").is_file()
        assert summary.machine(args.section, text) != "a machine not named"
    assert len(summary.analysis(summary.SETS[0]).images) == 24  # the Kodak set is the whole of Kodak
