"""Issue 18: the training step never makes the host wait for the device between density-control rounds.

Real encodes run under ``host_sync.HostSyncRecorder`` (see there for what counts as a sync on the CPU and
why). A recorded sync is allowed only where the encoder measures or reshapes: density rounds
(``DensityControl.densify``), the rate-driven prunes (``_prune_to_fit``) and outside the step loops
(initialisation, clustering, the write); with a progress callback, also at its reports.
"""

import numpy as np
import pytest
import torch

import codec
from host_sync import HostSyncRecorder

LOOPS = {("codec/train/encoder.py", "_fit"), ("codec/train/encoder.py", "_train_quantised")}
ROUNDS = {("codec/train/density.py", "densify"), ("codec/train/encoder.py", "_prune_to_fit")}
ITERATIONS = 60  # 42 fitting steps with 5 density rounds (half of them coarse for "default"), 18 quantised


def _in_a_step(sync) -> bool:
    return any(sync.within(*loop) for loop in LOOPS) and not any(sync.within(*r) for r in ROUNDS)


def _encode(crop, method, progress=None) -> HostSyncRecorder:
    options = codec.EncodeOptions(bpp=1.0, method=method, iterations=ITERATIONS, seed=0, device="cpu")
    with HostSyncRecorder() as syncs:
        codec.encode(crop, options=options, progress=progress)
    return syncs


@pytest.mark.parametrize("method", ["default", "paper"])
def test_no_step_of_either_phase_synchronises(crop, method):
    syncs = _encode(crop, method)
    assert [str(s) for s in syncs.events if _in_a_step(s)] == []
    # The recorder was live: density rounds and the measured prunes do read back, and are seen.
    assert any(s.within("codec/train/density.py", "densify") for s in syncs.events)
    assert any(s.within("codec/train/encoder.py", "_prune_to_fit") or s.within("codec/train/encoder.py", "_quantise")
               for s in syncs.events)


def test_progress_reports_are_the_only_other_syncs(crop):
    reports = []
    syncs = _encode(crop, "default", progress=reports.append)
    in_steps = [s for s in syncs.events if _in_a_step(s)]
    assert in_steps and all(s.within("codec/train/encoder.py", "end_step") for s in in_steps), [str(s) for s in in_steps]
    assert len(reports) == sum(s.what == "Tensor.__float__" for s in in_steps)  # one read per report


def test_the_recorder_sees_each_kind_of_sync():
    """Without this the tests above could pass by recording nothing."""
    t = torch.arange(6.0)
    cases = {
        "Tensor.__float__": lambda: float(t.sum()),
        "Tensor.__int__": lambda: int(t[2]),
        "Tensor.__bool__": lambda: bool(t.any()),
        "Tensor.item": lambda: t.max().item(),
        "Tensor.tolist": lambda: t.tolist(),
        "Tensor.numpy": lambda: t.numpy(),
        "Tensor.cpu": lambda: t.cpu(),
        "Tensor.__array__": lambda: np.asarray(t),
        "aten.nonzero": lambda: (t > 2).nonzero(),
        "aten.index with a boolean mask": lambda: t[t > 2],
        "aten.masked_select": lambda: t.masked_select(t > 2),
        "aten._unique2": lambda: torch.unique(t),
        "aten.repeat_interleave": lambda: torch.repeat_interleave(torch.tensor([1, 2])),
        "torch.tensor(host data, device=...)": lambda: torch.tensor([1.0, 2.0], device=t.device),
        "Tensor.to(device)": lambda: t.to(t.device),
    }
    for what, call in cases.items():
        with HostSyncRecorder() as syncs:
            call()
        assert what in [s.what for s in syncs.events], what
    with HostSyncRecorder() as syncs:  # and sync-free work records nothing
        torch.where(t > 2, t, -t).cumsum(0).mean()
    assert syncs.events == []
