"""Where the benchmarks and the tests find the shared images: ``shared/`` beside the checkout, or inside it
(as on a lent GPU machine)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = next((p for p in (REPO / "shared", REPO.parent / "shared") if p.is_dir()), REPO.parent / "shared")
KODAK = SHARED / "data" / "kodak"
PHOTOS = SHARED / "data" / "photos"
PAPER_TABLE = SHARED / "paper" / "table1.md"
RESULTS_DIR = REPO / "bench" / "results"  # stored benchmark rows (JSON lines) and plots
