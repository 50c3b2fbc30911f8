"""The node's memory figures and glibc tuning (ros/memory.py): the C heap's in-use part follows what is
allocated and freed, trimming keeps what is in use, and the arena limit yields to the operator's setting."""
import subprocess
import sys

import pytest

from sam_ovseg_ros.ros import memory

pytestmark = pytest.mark.skipif(memory._MALLINFO2 is None, reason="not glibc")


HEAP = """
import ctypes, json
from sam_ovseg_ros.ros import memory
before = memory.process_memory()
blocks = [ctypes.create_string_buffer(20_000) for _ in range(2000)]  # 40 MB in malloc'd blocks
held = memory.process_memory()
del blocks
freed = memory.process_memory()
memory.trim_heap()
print(json.dumps([before, held, freed, memory.process_memory()]))
"""


def test_heap_figures_follow_allocations():
    """In a process of its own (in the suite's, other threads allocate and free meanwhile)."""
    import json

    out = subprocess.run([sys.executable, "-c", HEAP], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"})
    before, held, freed, trimmed = json.loads(out.stdout)
    assert held["heap_in_use"] - before["heap_in_use"] > 35 and held["rss"] - before["rss"] > 35
    assert held["heap_in_use"] - freed["heap_in_use"] > 35
    assert trimmed["heap_in_use"] == pytest.approx(freed["heap_in_use"], abs=1)  # trimming frees nothing in use
    assert trimmed["rss"] < held["rss"] - 30  # and the pages went back


def test_arena_limit_yields_to_the_operator():
    code = "from sam_ovseg_ros.ros import memory; print(memory.limit_arenas())"
    out = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()
           for env in ({"PATH": "/usr/bin"}, {"PATH": "/usr/bin", "MALLOC_ARENA_MAX": "4"})]
    assert out == ["True", "False"]


PROBE = """
import ctypes, sys, threading
if sys.argv[1] == "node":
    import sam_ovseg_ros.ros.node  # what sam_ovseg_node runs first
import torch
from sam_ovseg_ros.ros import memory
go = threading.Event()
def work():
    keep = [ctypes.create_string_buffer(1000) for _ in range(20000)]
    go.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
import time; time.sleep(1)
print(memory.arenas())
go.set()
"""


def test_the_node_caps_malloc_arenas_before_any_thread():
    """Eight threads allocating at once: with the node's module imported first, two arenas; with torch
    imported first (its threads allocate) glibc's default gives many more."""
    env = {"PATH": "/usr/bin"}
    got = {how: int(subprocess.run([sys.executable, "-c", PROBE, how], capture_output=True, text=True, env=env,
                                   timeout=120).stdout.strip()) for how in ("node", "plain")}
    assert got["node"] == 2 and got["plain"] > 2, got
