"""Keep freed memory inside the process instead of handing it back to the OS after every batch (glibc).

Evaluation and training allocate and free the same large tensors batch after batch. With glibc's defaults
a block over its mmap threshold, and the free top of the heap, go back to the OS on every free, and each
page is faulted in again on the next batch: on a 2-core CPU that cost more than the arithmetic (the main
job spent 35-40 s of 55-59 s in the kernel). Raising the thresholds keeps the blocks for reuse. The price
is a resident size that stays near the run's peak until the process ends.

`KWSBENCH_MALLOC=system` keeps glibc's defaults; so does any MALLOC_*_ or GLIBC_TUNABLES setting of the
user's own. On other C libraries this does nothing.
"""

from __future__ import annotations

import ctypes
import os

OPT_OUT_ENV = "KWSBENCH_MALLOC"
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
# mallopt parameter numbers (malloc.h) and values; mallopt takes a C int, hence at most 2**31 - 1
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
# One arena: a thread other than the main one otherwise gets its own arena, whose heaps are at most 64 MB, so
# each larger block it frees goes back to the OS whatever the thresholds (kwsbench.run.workers evaluates
# models in threads: sys time 1.0 -> 3.1 s in the quick run with per-thread arenas).
_SETTINGS = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 1 << 28), (_M_ARENA_MAX, 1))


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when they were set."""
    if os.environ.get(OPT_OUT_ENV, "").strip().lower() == "system" or any(k in os.environ for k in _USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return all(mallopt(param, value) == 1 for param, value in _SETTINGS)
