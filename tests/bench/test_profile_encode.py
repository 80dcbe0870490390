"""bench.profile_encode's per-phase split of host and device time, on a real (short) CPU encode."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import codec
from bench.profile_encode import format_phases, phase_times

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kodim23_crop96x64.png"
ITERATIONS = 20


def test_every_phase_is_timed_and_every_step_counted():
    pixels = np.asarray(Image.open(FIXTURE).convert("RGB"))
    options = codec.EncodeOptions(bpp=1.0, iterations=ITERATIONS, seed=0, device="cpu")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        codec.encode(pixels, options=options)
    phases = phase_times(profile.events(), on_cuda=False)
    assert [p.name for p in phases] == ["fit", "quantise", "train_quantised", "write"]
    fit_steps = options.config.schedule.over(ITERATIONS).fit_steps
    assert [p.steps for p in phases] == [fit_steps, 0, ITERATIONS - fit_steps, 0]
    for phase in phases:
        assert 0 < phase.device_s <= phase.host_s, phase
    table = format_phases(phases, "cpu")
    assert table.splitlines()[1].split()[:2] == ["fit", str(fit_steps)] and "device busy" in table
