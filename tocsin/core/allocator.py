"""The C allocator's settings for a long-lived worker (glibc only; elsewhere nothing).

What grew a worker's RSS most per notified fingerprint was not what it keeps but the space
glibc's heap kept free: the large buffers a worker makes and drops all the time (fetch
responses, record batches of up to 256 KiB, the delivery read-ahead's bytes) start out above
the threshold from which glibc maps a block of its own (128 KiB) and returns it when it is
freed; but glibc raises that threshold to the largest block freed so far (up to 32 MiB), so
from then on they come from the heap, and the heap cannot give back what lies below the
tables' long-lived data. Over 25,000 fingerprints (BENCHMARKS.md) the heap's free space grew
41 MB while what was in use grew 15 MB; with the thresholds pinned, RSS grew by less than
half as much.

``tune()`` pins them: every block of 128 KiB or more is mapped on its own (and unmapped when
freed), and the top of the heap is given back once 8 MiB of it is free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 8 * 1024 * 1024

_tuned = False


def tune() -> bool:
    """Pin glibc's mmap and trim thresholds (once a process); whether it could."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt of these)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.debug("mallopt refused the thresholds")
    _tuned = ok
    return ok
