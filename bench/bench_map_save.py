#!/usr/bin/env python3
"""What an autosave of a large map costs the frame path (medians).

A map of at least --voxels voxels is built from real posed 7-Scenes frames (shifted 10 m each pass so it
keeps growing; 20 classes, 100 instances per frame). Then: the copy taken under the mapper's lock (the
only time the worker waits), the write on the writer thread (file size), the load, and the median frame
step with no save running vs while saves run back to back on the writer thread.

    python bench/bench_map_save.py [--voxels 1000000] [--voxel 0.02] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam_ovseg_ros.core.cloud import Backprojector, Intrinsics  # noqa: E402
from sam_ovseg_ros.mapping import persistence  # noqa: E402
from sam_ovseg_ros.mapping.mapper import Mapper  # noqa: E402
from sam_ovseg_ros.tools.samplebag import load_posed_frames  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voxels", type=int, default=1_000_000)
    ap.add_argument("--voxel", type=float, default=0.02)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "map_save.json")
    a = ap.parse_args()
    frames = load_posed_frames()
    h, w = frames[0][2].shape
    inst = ((np.arange(h)[:, None] * 10 // h) * 10 + np.arange(w)[None, :] * 10 // w + 1).astype(np.uint16)
    classes = np.arange(100) % 20
    names = [f"class{i}" for i in range(20)]
    sem = (classes[inst.astype(np.int64) - 1] + 1).astype(np.uint16)
    bp = Backprojector()
    mapper = Mapper(a.voxel, 10 * a.voxels, 0.3, 15, 0.3, pixel_stride=1)
    n = 0

    def step(i: int, shift: float) -> float:
        _, rgb, depth, k, pose = frames[i % len(frames)]
        pose = pose.copy()
        pose[0, 3] += shift
        dm = np.where(depth > 0, depth.astype(np.float32) / 1000.0, np.float32(np.nan))
        t0 = time.perf_counter()
        mapper.step(inst, sem, rgb, dm, bp.rays(Intrinsics.from_k(k, w, h)), classes, names, pose, i)
        return time.perf_counter() - t0

    passes = 0
    while len(mapper.map) < a.voxels:
        for i in range(len(frames)):
            step(n, 10.0 * passes)
            n += 1
        passes += 1
    folder = Path(tempfile.mkdtemp(prefix="bench_map_save_"))
    copy_s, write_s, load_s = [], [], []
    for _ in range(5):
        t0 = time.perf_counter()
        state = persistence.capture(mapper, "map")
        copy_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        path = persistence.write(folder, state)
        write_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        persistence.restore(Mapper(a.voxel, 10 * a.voxels, 0.3, 15, 0.3), persistence.read(path, "map", a.voxel))
        load_s.append(time.perf_counter() - t0)

    quiet = [step(n + i, 10.0 * passes) for i in range(15)]  # the same frames again: no growth in the timing
    store = persistence.MapStore(folder, "map", a.voxel)
    stop = threading.Event()

    def saver() -> None:
        while not stop.is_set():
            mapper.revision += 1  # force a save each time
            store.save(mapper, block=True)

    t = threading.Thread(target=saver, daemon=True)
    t.start()
    busy = [step(n + i, 10.0 * passes) for i in range(15)]
    stop.set()
    t.join()
    res = {"voxels": len(mapper.map), "objects": len(mapper.map.objects), "classes": len(mapper.map.names),
           "file_mb": path.stat().st_size / 1e6,
           "median_ms": {"copy under the lock (the frame path waits for this)": 1e3 * statistics.median(copy_s),
                         "write on the writer thread": 1e3 * statistics.median(write_s),
                         "load": 1e3 * statistics.median(load_s),
                         "frame step, no save running": 1e3 * statistics.median(quiet),
                         "frame step, saves running back to back": 1e3 * statistics.median(busy)}}
    print(json.dumps(res, indent=1))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
