"""keep_freed_memory: a step's image-sized temporaries, freed together, come back without page faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# In a fresh interpreter (the setting is process-wide): rounds of four 8 MB buffers, each written, then
# all freed, as a training step's temporaries are; minor page faults per round after a warm-up round.
_ROUNDS = """
import json, resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from kernels.host_memory import keep_freed_memory
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def one_round():
    buffers = [np.ones(1 << 20) for _ in range(4)]
    del buffers
one_round()
before = faults()
for _ in range(5):
    one_round()
print(json.dumps((faults() - before) / 5))
"""
BUFFER_PAGES = (8 << 20) // 4096  # what one buffer faulted in anew costs


def _faults_per_round(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and ru_minflt")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    default = _faults_per_round("default")
    if default < BUFFER_PAGES / 2:  # glibc's defaults fault at least one of the four in each round
        pytest.skip(f"this allocator reuses the buffers already ({default:.0f} faults a round)")
    assert _faults_per_round("tuned") < BUFFER_PAGES / 20

