"""Freed memory stays in the process (kwsbench.run.allocator): large blocks are reused, not faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from kwsbench.run.allocator import _USER_SETTINGS, OPT_OUT_ENV

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

# 20 allocations of 64 MB (above the largest mmap threshold glibc picks by itself) freed one after the other
PROBE = """
import resource, sys
import numpy as np
from kwsbench.run.allocator import keep_freed_memory
kept = keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.ones(8 << 20)
    del block
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(**env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if k not in (*_USER_SETTINGS, OPT_OUT_ENV)}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1])


@glibc
def test_large_blocks_are_reused_and_the_opt_outs_keep_the_defaults():
    kept, faults_kept = _probe()
    default, faults_default = _probe(**{OPT_OUT_ENV: "system"})
    assert kept and not default
    # by default each block is mapped and faulted in anew (20 times); kept, it is faulted in once, then reused
    # (a ratio, not a page count: transparent huge pages change how many faults one block takes)
    assert faults_default > 8 * faults_kept, (faults_default, faults_kept)
    user_choice, _ = _probe(MALLOC_TRIM_THRESHOLD_="1000000")
    assert not user_choice, "a MALLOC_* setting of the user's own is left alone"
