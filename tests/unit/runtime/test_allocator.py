"""With ``keep_freed_memory`` a large tensor allocated again after being freed reuses the same pages (no new page
faults); without it glibc maps fresh pages every time. Each case runs in a fresh interpreter: the setting is
process-wide and cannot be undone."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
import pipeline.runtime.load  # what the segment actor has imported when it applies the setting
from pipeline.runtime import allocator
print(allocator.keep_freed_memory() if sys.argv[1] == "keep" else False)
def fill():
    t = torch.empty(48 * 2**20 // 4, dtype=torch.float32)
    t.fill_(1.0)
    del t
for _ in range(4):  # glibc settles its heap layout over the first few blocks
    fill()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    fill()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    applied, kept = _faults("keep")
    _, default = _faults("default")
    pages = 5 * 48 * 2**20 // 4096  # five 48 MiB tensors
    assert applied
    assert default > pages // 2  # glibc's default: fresh pages for every 48 MiB block
    assert kept < pages // 20
