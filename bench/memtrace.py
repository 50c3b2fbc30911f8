#!/usr/bin/env python3
"""Runs ``sam_ovseg_node`` under ``tracemalloc`` and writes, every ``MEMTRACE_PERIOD`` s, where Python-side
memory grew since the first report: the allocation sites that grew most (numpy arrays included: numpy
reports its buffers to tracemalloc), the object types whose count grew, and the process's C heap
(``process_memory``). What tracemalloc does not see (torch's own allocator, the middleware) shows as RSS
growth with no matching site. For ``bench/soak.py --tracemalloc``; slows the node down (every allocation
is traced), so its frame rates are not the node's.

    MEMTRACE_OUT=report.txt MEMTRACE_PERIOD=300 python bench/memtrace.py --ros-args ...
"""
from __future__ import annotations

import gc
import os
import runpy
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def type_counts() -> Counter:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def report(out: Path, period: float, frames: int = 8) -> None:
    from sam_ovseg_ros.ros.diagnostics import process_memory

    time.sleep(period)  # the first report after warm-up (models loaded, caches built): growth is counted from it
    base, base_types, t0 = tracemalloc.take_snapshot(), type_counts(), time.monotonic()
    while True:
        time.sleep(period)
        snap, types = tracemalloc.take_snapshot(), type_counts()
        traced, peak = tracemalloc.get_traced_memory()
        lines = [f"=== {time.monotonic() - t0:.0f} s after the base snapshot; traced {traced / 2**20:.1f} MB "
                 f"(peak {peak / 2**20:.1f}); process {process_memory()}"]
        for st in snap.compare_to(base, "traceback")[:12]:
            if st.size_diff <= 0:
                break
            lines.append(f"+{st.size_diff / 2**20:.2f} MB ({st.count_diff:+d} blocks, now {st.size / 2**20:.2f} MB):")
            lines += ["    " + ln for ln in st.traceback.format(limit=frames)]
        grown = sorted(((types[k] - base_types.get(k, 0), k) for k in types), reverse=True)[:10]
        lines.append("object types grown: " + ", ".join(f"{k} {d:+d} (now {types[k]})" for d, k in grown if d > 0))
        with open(out, "a") as f:
            f.write("\n".join(lines) + "\n\n")
        del snap


def main() -> None:
    tracemalloc.start(int(os.environ.get("MEMTRACE_FRAMES", "8")))
    out = Path(os.environ.get("MEMTRACE_OUT", "memtrace.txt"))
    out.write_text("")
    threading.Thread(target=report, args=(out, float(os.environ.get("MEMTRACE_PERIOD", "300"))), daemon=True).start()
    sys.argv = ["sam_ovseg_node", *sys.argv[1:]]
    runpy.run_module("sam_ovseg_ros.ros.node", run_name="__main__")


if __name__ == "__main__":
    main()
