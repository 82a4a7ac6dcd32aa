"""glibc malloc settings for CPU inference: keep freed memory for the next tensor instead of returning it to the OS.

PyTorch's CPU tensors come straight from malloc. glibc serves large blocks with fresh ``mmap`` pages (above a
threshold that starts at 128 KiB) and hands a freed heap top back to the OS (above the trim threshold), so the
same large tensor, allocated again for every group of prompts ([P,4096,256] image tokens, upscaled masks), is paid
for again in page faults: a few µs per 4 KiB page, ~17 ms for 32 MiB before anything is computed. Raising both
thresholds keeps freed memory in the heap for reuse (its effect on the decoder: docs/performance.md). The cost: the
process's resident memory stays near its peak instead of shrinking between batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt parameters from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30  # blocks larger than this still get their own mapping (and are unmapped on free)
TRIM_THRESHOLD_BYTES = (1 << 31) - 1  # the largest value the C int parameter takes

_applied = False


def in_effect() -> bool:
    """Whether :func:`keep_freed_memory` has applied the settings to this process."""
    return _applied


def keep_freed_memory() -> bool:
    """Applies the settings to this process once (glibc only; elsewhere a no-op); returns whether they are in
    effect."""
    global _applied
    if _applied:
        return True
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.info("not glibc: malloc settings left as they are")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    return _applied
