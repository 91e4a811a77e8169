"""The C allocator a training process runs best with (no torch import: the command line
applies it before anything is loaded)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for the next allocation instead of handing
    it back to the system; True where it applied (Linux with glibc).

    A training step frees and allocates the same large buffers every time: fp32 gradients,
    autocast's bf16 weight copies, the word embedding's dense gradient. glibc serves every
    block above its mmap threshold (128 KB, rising to at most 32 MB) with fresh pages and
    returns them on free, so each step faults in and zeroes those pages again. With mmap
    off and no trimming the blocks
    come from the heap and are reused: a base-size bf16 UNITER step 1.07× faster on one
    thread, and a step's fresh buffers (that gradient zeroed, the matrix cast to bf16 and
    back) 168 → 13 ms (``benchmarks/allocator.py``). The process keeps its peak memory
    until it exits, as PyTorch's CUDA caching allocator does on a GPU. ``vlp``'s command
    line applies it to every command; a library user may call it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
