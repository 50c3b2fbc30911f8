"""Per frame: track the instances, and integrate posed frames into the voxel map (ROS-free).

The pipeline calls ``step`` after fusion; with a pose (map <- camera, 4x4) the frame's valid points
go to the map and the tracker also compares instances in 3D. Thread-safe: the node's timer reads
the map (``snapshot``) while the worker integrates.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam_ovseg_ros.core.cloud import pack_rgb, unpack_rgb
from sam_ovseg_ros.core.cloud import write_ply as write_ply_records
from sam_ovseg_ros.mapping.tracking import Tracker
from sam_ovseg_ros.mapping.voxel_map import ObjectStats, VoxelMap


@dataclass
class MapSnapshot:
    xyz: np.ndarray  # (N, 3) float32 voxel centres, map frame
    rgb: np.ndarray  # (N,) uint32 0x00RRGGBB, last seen colour
    label: np.ndarray  # (N,) uint16 class + 1 in the current vocabulary (0 none)
    object: np.ndarray  # (N,) uint32 object id (0 none)
    objects: list[ObjectStats]
    class_names: list[str]
    stamp_ns: int
    nbytes: int


class Mapper:
    def __init__(self, voxel_size: float, max_voxels: int, iou_threshold: float, max_age: int,
                 overlap_3d: float, min_object_voxels: int = 5, pixel_stride: int = 1) -> None:
        self.map = VoxelMap(voxel_size, max_voxels)
        self.pixel_stride = pixel_stride  # integrate every n-th row and column
        self.tracker = Tracker(iou_threshold, max_age, overlap_3d)
        self.min_object_voxels = min_object_voxels
        self.stamp_ns = 0
        self.revision = 0  # counts every change of the map (integration, clear, load): what a save compares
        self._lock = threading.Lock()

    def step(self, instances: np.ndarray, semantic: np.ndarray, rgb: np.ndarray, depth_m: np.ndarray,
             rays: tuple[np.ndarray, np.ndarray], classes: np.ndarray, class_names: list[str],
             pose: np.ndarray | None, stamp_ns: int) -> np.ndarray:
        """Track ids of instances 1..n (``classes[i]``: vocabulary index of instance i + 1, -1 none)."""
        n = len(classes)
        fv = None
        t = self.timings = {}
        t0 = time.perf_counter()
        with self._lock:
            if pose is not None:
                k = self.pixel_stride
                if k > 1:
                    depth_m, instances_s = depth_m[::k, ::k], instances[::k, ::k]
                    rgb, semantic, rays = rgb[::k, ::k], semantic[::k, ::k], (rays[0][:, ::k], rays[1][::k, :])
                else:
                    instances_s = instances
                valid = np.isfinite(depth_m)
                xyz = map_points(depth_m, rays, pose, valid)
                fv = self.map.voxelize(xyz, instances_s[valid].astype(np.int64), n)
            t["map_voxelize"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            tracks = self.tracker.update(instances, n, fv.instance_keys() if fv is not None else None)
            t["tracking"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            if fv is not None:
                packed = pack_rgb(rgb).view(np.uint32)[valid]
                labels = semantic[valid].astype(np.int64) - 1
                self.map.integrate(fv, packed, labels, class_names, np.asarray(classes), tracks, pose[:3, 3])
                self.map.forget_tracks(self.tracker.live())
                self.stamp_ns = stamp_ns
                self.revision += 1
            t["map_integrate"] = time.perf_counter() - t0
        return tracks

    def embed_rows(self, tracks: np.ndarray, areas: np.ndarray, budget: int | None) -> np.ndarray:
        """Which of this frame's instances (rows of ``tracks``) to embed: those in a map object, the objects
        with the fewest embedded views first (then the larger instance), at most ``budget`` (None: all)."""
        with self._lock:
            oids = self.map.objects_of(tracks)
            views = self.map.embeddings.views_of(oids.tolist())
        rows = np.flatnonzero((oids > 0) & (np.asarray(areas) > 0))
        if budget is not None and len(rows) > budget:
            rows = rows[np.lexsort((-np.asarray(areas)[rows], views[rows]))[:budget]]
        return rows

    def add_embeddings(self, tracks: np.ndarray, embeddings: np.ndarray, weights: np.ndarray) -> None:
        """The crops' unit embeddings, each to the object its track feeds now (skipped if that object is gone)."""
        with self._lock:
            oids = self.map.objects_of(tracks)
            ok = np.array([o in self.map.objects for o in oids.tolist()], bool) if len(oids) else np.zeros(0, bool)
            if ok.any():
                self.map.embeddings.add(oids[ok], np.asarray(embeddings)[ok], np.asarray(weights)[ok])
                self.revision += 1

    def query(self, text: np.ndarray, top_k: int, allowed=None) -> tuple[np.ndarray, np.ndarray, int]:
        """(ids, cosine scores) of the objects best matching a unit text embedding, and how many objects
        have an embedding; ``allowed``: ids that may be answered (those on ~/map/objects)."""
        with self._lock:
            ids, scores = self.map.embeddings.query(text, top_k, allowed)
            return ids, scores, len(self.map.embeddings)

    def reset_time(self) -> None:
        """Time jumped back (a bag loop): tracks start over (ids keep counting), the map stays."""
        with self._lock:
            self.tracker.reset()

    def clear(self) -> None:
        with self._lock:
            self.map.clear()
            self.revision += 1

    def snapshot(self, class_names: list[str]) -> MapSnapshot:
        with self._lock:
            m = self.map
            return MapSnapshot(m.centres(), m.rgb.copy(), m.labels(class_names), m.obj.copy(),
                               m.object_stats(self.min_object_voxels), list(class_names), self.stamp_ns, m.nbytes())

    def save(self, folder: Path, class_names: list[str]) -> tuple[Path, Path]:
        """A binary PLY of the voxels (x y z, colour, label, object) and a JSON of the objects, for people and
        viewers (the map's own file is persistence.MAP_FILE); each written whole or not at all."""
        from sam_ovseg_ros.mapping.persistence import atomic_write

        snap = self.snapshot(class_names)
        folder.mkdir(parents=True, exist_ok=True)
        ply = atomic_write(folder / "map.ply", lambda p: write_ply(p, snap))
        js = atomic_write(folder / "objects.json", lambda p: p.write_text(json.dumps(objects_json(snap), indent=1)))
        return ply, js


def map_points(depth_m: np.ndarray, rays: tuple[np.ndarray, np.ndarray], pose: np.ndarray,
               valid: np.ndarray) -> np.ndarray:
    """(3, P) float32 map-frame points of the valid pixels: pose @ (z rx, z ry, z), whole-image products
    (no index arrays), then one compression per coordinate."""
    x, y = depth_m * rays[0], depth_m * rays[1]
    r, t = pose[:3, :3].astype(np.float32), pose[:3, 3].astype(np.float32)
    out = np.empty((3, int(valid.sum())), np.float32)
    for i in range(3):
        out[i] = (r[i, 0] * x + r[i, 1] * y + r[i, 2] * depth_m + t[i])[valid]
    return out


def objects_json(snap: MapSnapshot) -> dict:
    return {"class_names": snap.class_names, "stamp_ns": snap.stamp_ns, "objects": [
        {"id": o.id, "class_name": o.class_name,
         "class_id": snap.class_names.index(o.class_name) + 1 if o.class_name in snap.class_names else 0,
         "class_confidence": round(o.confidence, 4), "views": o.views, "voxels": o.voxels,
         "centroid": [round(float(v), 4) for v in o.centroid],
         "bbox_min": [round(float(v), 4) for v in o.bbox_min], "bbox_max": [round(float(v), 4) for v in o.bbox_max]}
        for o in snap.objects]}


PLY_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                      ("label", "<u2"), ("object", "<u4")])


def write_ply(path: Path, snap: MapSnapshot) -> None:
    v = np.empty(len(snap.xyz), PLY_DTYPE)
    for i, a in enumerate("xyz"):
        v[a] = snap.xyz[:, i]
    rgb = unpack_rgb(snap.rgb.view(np.float32))
    v["red"], v["green"], v["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v["label"], v["object"] = snap.label, snap.object
    write_ply_records(path, v, f"sam_ovseg_ros semantic voxel map; label = class + 1 of [{', '.join(snap.class_names)}]")
