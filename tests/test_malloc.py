"""glibc's thresholds: set once, switchable off; checked in fresh processes so the test
process keeps its own allocator settings."""

import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
import torch
from weightspace._malloc import keep_freed_memory

class Info(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t fields
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
applied = keep_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.empty(4 * 2**20)  # 16 MB: above glibc's default dynamic threshold at start (128 kB)
mapped = libc.mallinfo2().hblkhd - before
del x
print(applied, keep_freed_memory(), mapped >= 16 * 2**20)
"""


def _run(env_value: str | None) -> list[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "WEIGHTSPACE_MALLOPT"}
    if env_value is not None:
        env["WEIGHTSPACE_MALLOPT"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_thresholds_keep_activation_sized_blocks_on_the_heap():
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("not glibc >= 2.33")
    # set (and idempotent): a 16 MB tensor comes from the heap, not from its own mmap
    assert _run(None) == ["True", "True", "False"]
    # switched off: glibc's defaults, so the same tensor is mmapped
    assert _run("0") == ["False", "False", "True"]
