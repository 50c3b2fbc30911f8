"""The process's memory: what it holds (``process_memory``) and keeping it flat over hours (glibc tuning).

Each frame allocates and frees hundreds of MB of arrays of many sizes from several threads (the worker,
the publisher, the executor, the middleware's). glibc gives each thread that allocates at the same
time as another its own arena, up to 8 per core, and keeps what is freed in that arena: the C heap's free
part grows run after run of frames while the part in use stays flat, so the resident size creeps up
(measured in bench/soak.py; docs/performance.md). ``limit_arenas`` caps the arenas at two before any other
thread starts, so freed memory is reused instead of stranded, and ``trim_heap`` hands free pages back
now and then. Elsewhere than glibc both do nothing.
"""
from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def _libc_function(name: str, restype=None, argtypes=None):
    """glibc's ``name`` with its C types set; None where the C library has no such function."""
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.restype = restype
    if argtypes is not None:
        fn.argtypes = argtypes
    return fn


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


_MALLINFO2 = _libc_function("mallinfo2", _MallInfo2)  # glibc >= 2.33
_MALLOC_TRIM = _libc_function("malloc_trim", ctypes.c_int, [ctypes.c_size_t])


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``, every arena); frees nothing
    in use."""
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False


def process_memory() -> dict[str, float]:
    """MB: resident set (``rss``) and, with glibc, the C heap over all arenas: bytes in use
    (``heap_in_use``), free but kept by malloc (``heap_free``: fragmentation, not a leak) and large blocks
    mapped directly (``mmap``). A growing ``heap_in_use`` is a leak; a growing ``heap_free`` is the allocator."""
    out = {}
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            out["rss"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        pass
    if _MALLINFO2 is not None:
        mi = _MALLINFO2()
        out.update(heap_in_use=mi.uordblks / 2**20, heap_free=mi.fordblks / 2**20, mmap=mi.hblkhd / 2**20)
    return out


def arenas() -> int:
    """How many malloc arenas the process has (glibc ``malloc_info``; 0 elsewhere)."""
    open_memstream = _libc_function("open_memstream", ctypes.c_void_p)
    if open_memstream is None:
        return 0
    libc = ctypes.CDLL(None)
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    fp = ctypes.c_void_p(open_memstream(ctypes.byref(buf), ctypes.byref(size)))
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    text = ctypes.string_at(buf, size.value).decode()
    libc.free(buf)
    return text.count("<heap nr=")


def limit_arenas(n: int = 2) -> bool:
    """At most ``n`` malloc arenas (glibc ``mallopt(M_ARENA_MAX)``), unless the operator set
    ``MALLOC_ARENA_MAX`` already. Only effective before a second thread allocates: glibc computes its
    limit once, when it first needs a new arena (importing torch is already too late: 3 arenas, not 2)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    fn = _libc_function("mallopt", ctypes.c_int, [ctypes.c_int, ctypes.c_int])
    return bool(fn(M_ARENA_MAX, n)) if fn is not None else False
