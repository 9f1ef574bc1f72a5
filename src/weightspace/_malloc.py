"""Keep freed memory in the process instead of handing it back to the OS (glibc only).

Stacked INR fitting allocates and frees the same few activation tensors ``[n, P, width]``
(a few MB each) every step. glibc serves blocks above its (dynamic) mmap threshold with
``mmap`` and unmaps them on ``free``, and trims the top of its heap past the trim
threshold; either way the next step faults the same pages back in. Measured on the 2-core
CPU (83 SIRENs 2→32→32→1 per batch, one thread, `benchmarks/fit_inrs.py`): 3.0-3.9k
INR-steps/s with glibc's defaults, 4.7-5.0k with the thresholds set here, in alternating
processes.

`keep_freed_memory` fixes both thresholds once per process: blocks up to 32 MB (glibc's
documented maximum mmap threshold on 64-bit) come from the heap, and the heap is never
trimmed. The cost is that the process keeps its peak heap until it exits, which suits a
fitting job. ``WEIGHTSPACE_MALLOPT=0`` leaves glibc's defaults alone; on other C libraries
(macOS, musl) nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
_applied = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); True when they are set
    (now or earlier in this process), False when switched off or not on glibc."""
    global _applied
    if os.environ.get("WEIGHTSPACE_MALLOPT", "1") == "0":
        return False
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
