"""The JSON-lines results file: one row per measured file, appended as tasks finish, so a run resumes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from bench.rd.plan import row_key


def load_results(path: Path) -> dict[tuple, dict]:
    """Rows of a JSON-lines results file by key (the last of duplicates wins; a torn last line is skipped)."""
    rows: dict[tuple, dict] = {}
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            rows[row_key(row)] = row
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def _clean(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def append_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(_clean(row)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
