"""Keep the memory a forward pass frees inside the process, for the next pass to reuse."""

from __future__ import annotations

import ctypes
import platform

__all__ = [
    "MMAP_THRESHOLD_BYTES",
    "TOP_PAD_BYTES",
    "TRIM_THRESHOLD_BYTES",
    "keep_freed_memory",
]

# mallopt's parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# The largest threshold glibc accepts on 64-bit systems: blocks below it come from the heap.
MMAP_THRESHOLD_BYTES = 32 << 20
# Free memory at the top of a heap stays in the process up to this much.
TRIM_THRESHOLD_BYTES = 1 << 30
# Extra memory taken whenever a heap grows, so that passes of a little more do not grow it again.
TOP_PAD_BYTES = 64 << 20


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A forward pass allocates and frees tens of megabytes of activations. With glibc's defaults a
    worker thread's heap gives its free top back to the kernel once it passes an adaptive
    threshold (twice the largest block freed so far, at most 64 MiB), and the next pass faults
    every page in again, zeroed by the kernel: 68,000 to 550,000 page faults and 0.3-1.9 s of
    system CPU per 360 of the benchmark's chunks on two cores, against 9,900-25,800 and 0.1-0.2 s
    with these thresholds, for some 50 MB more resident memory (bench/README.md). jemalloc
    or tcmalloc would avoid it too, but as a system package preloaded into every process;
    ``mallopt`` is part of glibc. The settings are the process's: every allocation after the
    call follows them.

    Returns:
        Whether the thresholds were set: False where the C library is not glibc.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (_M_TOP_PAD, TOP_PAD_BYTES),
    )
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
