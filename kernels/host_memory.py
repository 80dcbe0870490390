"""Host memory for training on the CPU: let freed image-sized buffers be reused, not handed back.

Every training step makes a dozen image-sized temporaries (the render, the error, their gradients, the
renderer's float64 copies). glibc's default gives blocks that large fresh pages, or trims the heap back once
the step's blocks are freed together, so each temporary would be page-faulted in anew at every step. Raising
the mmap threshold to glibc's largest and the trim threshold well above one step's blocks keeps them in the
heap for the next step. Numerics are untouched (the page faults and times saved: BENCHMARKS.md, section
``rd-v2-background``).
"""

from __future__ import annotations

import ctypes
import functools

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap, reused when freed
TRIM_THRESHOLD = 512 << 20  # free memory the heap keeps at its top before returning it to the system


@functools.cache
def keep_freed_memory() -> bool:
    """Tune the process's allocator once (glibc only); True when it took the settings. Process-wide: the
    cost is that up to ``TRIM_THRESHOLD`` of freed memory stays with the process after an encode."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: its allocator's defaults stand
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
