"""The prepared device check runs end to end on the CPU (its dry run), so it cannot rot between GPU loans."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_passes_every_step_and_writes_its_summary(kodak_dir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text()
    for step in ("env", "triton-tests", "rd", "profile", "decode-check"):
        assert f"**{step}**: ok" in summary, summary
    assert "**kernels**: skipped" in summary
    assert "two CPU decodes identical" in summary and "phase" in summary
    assert (tmp_path / "rd-gpu.jsonl").read_text().count('"codec": "ours"') == 1


def test_unknown_step_is_refused(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run", "--steps", "env,warp",
                             "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown steps ['warp']" in result.stderr
