"""``PairBound``: the size of the Triton renderer's (tile, Gaussian) pair buffers, kept without reading
the pair count back to the host on every render.

Binning learns how many pairs a render needs only on the device (a cumulative sum). Sizing the buffers
from it exactly means a host round trip per render, which stalls the host until the GPU has caught up;
in an encode that is every step. A ``PairBound`` holds a host-side capacity instead and, on the device,
the most pairs any render needed since it was last checked. A render that needs more than the capacity
keeps only the first ``capacity`` pairs (those of the highest-index Gaussians are dropped) and raises
the overflow flag (peak > capacity). ``check`` reads the peak back once, at points where the host
synchronises anyway (the encoder's density rounds and the end of training), reports the flag, and sets
the capacity to ``HEADROOM`` times the peak, so the Gaussians may grow and spread until the next check.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

HEADROOM = 2.0  # capacity per pair needed at the last check: density control grows the count by 25 % at most
MINIMUM = 4096  # pairs: small scenes never run close to the bound


class PairBound:
    def __init__(self) -> None:
        self.capacity: int | None = None  # None until the first render sizes it (one read back)
        self._peak: Tensor | None = None  # [] int32 on the device: the most pairs a render needed since the check

    def size(self, total: Tensor) -> int:  # total [] int32: the pairs this render needs, on the device
        """The capacity to allocate for this render, noting its need on the device."""
        if self.capacity is None:
            self.capacity = _bound(int(total))  # the first render of a bound: the one read back until a check
        self._peak = total if self._peak is None else self._peak.maximum(total)
        return self.capacity

    def check(self) -> bool:
        """A host sync: whether any render since the last check needed more pairs than the capacity (and
        so drew without some of them); the capacity becomes ``HEADROOM`` times their peak."""
        if self._peak is None:
            return False
        peak, self._peak = int(self._peak), None
        overflowed = self.capacity is not None and peak > self.capacity
        self.capacity = _bound(peak)
        return overflowed


def _bound(pairs: int) -> int:
    return max(MINIMUM, math.ceil(HEADROOM * pairs))
