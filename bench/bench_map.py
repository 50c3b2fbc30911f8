#!/usr/bin/env python3
"""Semantic map cost per 640x480 frame (medians): voxelize + integrate, tracking, and the map's memory.

Real posed frames (7-Scenes redkitchen; the 15 in test/data by default, or another folder of the same
layout); each frame carries 100 instances (a 10 x 10 grid) and a 20-class label map, like a busy scene.

    python bench/bench_map.py [--folder DIR] [--voxel 0.05] [--repeat 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam_ovseg_ros.core.cloud import Backprojector, Intrinsics  # noqa: E402
from sam_ovseg_ros.mapping.mapper import Mapper  # noqa: E402
from sam_ovseg_ros.tools.samplebag import SEVEN_SCENES, load_posed_frames  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=SEVEN_SCENES)
    ap.add_argument("--voxel", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=3, help="passes over the frames (the map keeps growing)")
    ap.add_argument("--stride", type=int, default=2, help="map.pixel_stride (1: every pixel)")
    ap.add_argument("--grow", action="store_true", help="shift every pass by 10 m: the map keeps growing")
    ap.add_argument("--max-voxels", type=int, default=2_000_000)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "map.json")
    a = ap.parse_args()
    frames = load_posed_frames(a.folder)
    h, w = frames[0][2].shape
    inst = ((np.arange(h)[:, None] * 10 // h) * 10 + np.arange(w)[None, :] * 10 // w + 1).astype(np.uint16)
    classes = np.arange(100) % 20
    names = [f"class{i}" for i in range(20)]
    sem = (classes[inst.astype(np.int64) - 1] + 1).astype(np.uint16)
    bp = Backprojector()
    mapper = Mapper(a.voxel, a.max_voxels, 0.3, 15, 0.3, pixel_stride=a.stride)
    t_total, stages = [], {}
    for rep in range(a.repeat):
        for i, (_, rgb, depth, k, pose) in enumerate(frames):
            kk = Intrinsics.from_k(k, w, h)
            dm = np.where(depth > 0, depth.astype(np.float32) / 1000.0, np.float32(np.nan))
            if a.grow:
                pose = pose.copy()
                pose[0, 3] += 10.0 * rep
            t0 = time.perf_counter()
            mapper.step(inst, sem, rgb, dm, bp.rays(kk), classes, names, pose, (rep * len(frames) + i + 1) * 10**9)
            t_total.append(time.perf_counter() - t0)
            for k_, v in mapper.timings.items():
                stages.setdefault(k_, []).append(v)
    t_map = [a_ + b_ for a_, b_ in zip(stages["map_voxelize"], stages["map_integrate"])]
    m = mapper.map
    res = {"frames": len(frames) * a.repeat, "voxel_m": a.voxel, "pixel_stride": a.stride, "valid_points_per_frame": int(np.median(
        [(d > 0).sum() for _, _, d, _, _ in frames])),
        "median_ms": {"step (points + voxelize + tracking + integrate)": 1e3 * statistics.median(t_total),
                      "map integration (points + voxelize + integrate)": 1e3 * statistics.median(t_map),
                      **{k_: 1e3 * statistics.median(v) for k_, v in stages.items()}},
        "voxels": len(m), "objects": len(m.object_stats()), "map_bytes": m.nbytes(), "classes": len(m.names),
        "max_voxels": a.max_voxels, "last_pass_median_ms": 1e3 * statistics.median(t_total[-len(frames):])}
    print(json.dumps(res, indent=1))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
