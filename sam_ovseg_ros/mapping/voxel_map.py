"""Semantic voxel map (ROS-free): every valid depth point of every posed frame, in the map frame.

Each voxel keeps class evidence summed over views (a label wrong in one frame is outvoted by the
others), its last colour, the frame it was last seen in, and the object it belongs to. Objects are
3D instances merged across frames: an instance joins the object its track already fed, else the
object owning most of its voxels (if that covers ``join_overlap`` of them), else it starts a new one;
an instance that also covers most of another object's voxels merges the two. Each object counts its
views and its per-view class votes.

All per-point work is vectorised: voxel coordinates are packed into one int64 key; the frame's
voxels are found with one ``bincount`` over a dense local grid (no sort of the points). Voxel data
lives in append-only arrays with spare capacity; a sorted key index (keys and their slots) answers
lookups with ``searchsorted`` and takes new voxels with one ``insert`` of two int64 arrays. The map
is bounded by ``max_voxels``: past it, the voxels seen longest ago (then the farthest from the
camera) go, down to 90 % of the bound, so the sort and compaction happen once per many frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sam_ovseg_ros.mapping.embeddings import EmbeddingTable

_BITS = 21
_OFF = 1 << (_BITS - 1)  # voxel coordinates in [-2^20, 2^20): +-52 km at 5 cm
_MASK = (1 << _BITS) - 1
_DENSE_LIMIT = 1 << 23  # local grids up to 8 M cells are counted densely


def pack(vox: np.ndarray) -> np.ndarray:
    """(P, 3) int64 voxel coordinates -> (P,) int64 keys, ordered like (x, y, z) lexicographically."""
    v = vox + _OFF
    return (v[:, 0] << (2 * _BITS)) | (v[:, 1] << _BITS) | v[:, 2]


def unpack(keys: np.ndarray) -> np.ndarray:
    return np.stack([(keys >> (2 * _BITS)) & _MASK, (keys >> _BITS) & _MASK, keys & _MASK], -1) - _OFF


@dataclass
class FrameVoxels:
    keys: np.ndarray  # (V,) sorted int64 voxel keys of the frame
    inv: np.ndarray  # (P,) each point's index into keys
    instance_voxels: list[np.ndarray]  # per instance 1..n: indices into keys of the voxels it owns
    owner: np.ndarray  # (V,) the instance (1..n) owning each voxel, 0 none

    def instance_keys(self) -> list[np.ndarray]:
        """Per instance, its sorted voxel keys (what the tracker compares in 3D)."""
        return [self.keys[v] for v in self.instance_voxels]


@dataclass
class MapObject:
    id: int
    views: int = 0
    votes: dict[str, int] = field(default_factory=dict)  # class name -> views that voted for it

    def label(self) -> tuple[str, float]:
        """(accumulated class, share of the voting views); ("", 0) when no view gave a class."""
        if not self.votes:
            return "", 0.0
        name = max(self.votes, key=lambda k: (self.votes[k], -list(self.votes).index(k)))
        return name, self.votes[name] / sum(self.votes.values())


@dataclass
class ObjectStats:
    id: int
    class_name: str
    confidence: float
    views: int
    voxels: int
    centroid: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray


class VoxelMap:
    def __init__(self, voxel_size: float = 0.05, max_voxels: int = 1_000_000, join_overlap: float = 0.25) -> None:
        self.voxel_size = float(voxel_size)
        self.max_voxels = int(max_voxels)
        self.join_overlap = join_overlap
        self.names: list[str] = []  # class evidence columns; grows with every name ever used
        self._col: dict[str, int] = {}
        self.clear()
        self._next_object = 1

    def clear(self) -> None:
        self._n = 0
        self._keys = np.zeros(0, np.int64)  # per slot (append order)
        self._counts = np.zeros((0, len(self.names)), np.uint16)
        self._rgb = np.zeros(0, np.uint32)
        self._obj = np.zeros(0, np.uint32)
        self._seen = np.zeros(0, np.int64)
        self._sorted = np.zeros(0, np.int64)  # the keys, sorted, and the slot of each
        self._slot = np.zeros(0, np.int64)
        self.objects: dict[int, MapObject] = {}
        self.embeddings = EmbeddingTable()  # objects' CLIP embeddings (mapping/embeddings.py)
        self._track_object: dict[int, int] = {}
        self.frames = 0

    # the voxels in slot order (views, no copies)
    keys = property(lambda self: self._keys[: self._n])
    counts = property(lambda self: self._counts[: self._n])
    rgb = property(lambda self: self._rgb[: self._n])
    obj = property(lambda self: self._obj[: self._n])
    seen = property(lambda self: self._seen[: self._n])

    def __len__(self) -> int:
        return self._n

    def nbytes(self) -> int:
        """Memory held, spare capacity, the sorted index and the objects' embeddings included."""
        return sum(a.nbytes for a in (self._keys, self._counts, self._rgb, self._obj, self._seen, self._sorted,
                                      self._slot)) + self.embeddings.nbytes()

    def _reserve(self, need: int) -> None:
        cap = len(self._keys)
        if need <= cap:
            return
        cap = max(need, 2 * cap, 4096)
        for name in ("_keys", "_counts", "_rgb", "_obj", "_seen"):
            old = getattr(self, name)
            grown = np.zeros((cap, *old.shape[1:]), old.dtype)
            grown[: self._n] = old[: self._n]
            setattr(self, name, grown)

    # ------------------------------------------------------------------ integration
    def _columns(self, class_names: list[str]) -> np.ndarray:
        for n in class_names:
            if n not in self._col:
                self._col[n] = len(self.names)
                self.names.append(n)
        if self._counts.shape[1] < len(self.names):
            grown = np.zeros((len(self._keys), len(self.names)), np.uint16)
            grown[:, : self._counts.shape[1]] = self._counts
            self._counts = grown
        return np.array([self._col[n] for n in class_names], np.int64)

    def frame_voxels(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sorted unique keys, index of each point's key) of map-frame points, (3, P) (or (P, 3))."""
        xyz = xyz if xyz.shape[0] == 3 and xyz.ndim == 2 and xyz.shape[1] != 3 else xyz.T
        q = np.floor(np.asarray(xyz, dtype=np.float32) * np.float32(1.0 / self.voxel_size))
        lo, hi = q.min(1).astype(np.int64), q.max(1).astype(np.int64)
        dims = hi - lo + 1
        cells_total = int(np.prod(dims))
        if cells_total <= _DENSE_LIMIT:
            qi = q.astype(np.int32)
            local = (qi[0] - lo[0]) * int(dims[1] * dims[2]) + (qi[1] - lo[1]) * int(dims[2]) + (qi[2] - lo[2])
            occupied = np.bincount(local, minlength=cells_total).astype(bool)
            cells = np.flatnonzero(occupied)
            lut = np.cumsum(occupied, dtype=np.int32) - 1
            inv = lut[local]
            cz = cells % dims[2]
            cy = (cells // dims[2]) % dims[1]
            cx = cells // (dims[1] * dims[2])
            keys = pack(np.stack([cx + lo[0], cy + lo[1], cz + lo[2]], -1))
            return keys, inv
        keys, inv = np.unique(pack(q.T.astype(np.int64)), return_inverse=True)  # a frame spanning kilometres
        return keys, inv

    def voxelize(self, xyz: np.ndarray, instance: np.ndarray, n_instances: int) -> "FrameVoxels":
        """A frame's voxels: keys, each point's voxel, each voxel's majority instance (0 none)."""
        fkeys, inv = self.frame_voxels(xyz)
        nv = len(fkeys)
        vox_inst = np.zeros(nv, np.int64)
        if n_instances:
            has = instance > 0
            cells = inv[has].astype(np.int64) * n_instances + (instance[has] - 1)
            own = np.bincount(cells, minlength=nv * n_instances).reshape(nv, n_instances)
            vox_inst = np.where(own.max(1) > 0, own.argmax(1) + 1, 0)  # majority instance of each voxel
        order = np.argsort(vox_inst, kind="stable")
        bounds = np.searchsorted(vox_inst[order], np.arange(n_instances + 2))
        return FrameVoxels(fkeys, inv, [order[bounds[i]:bounds[i + 1]] for i in range(1, n_instances + 1)], vox_inst)

    def integrate(self, fv: "FrameVoxels", rgb: np.ndarray, labels: np.ndarray, class_names: list[str],
                  instance_classes: np.ndarray, track_ids: np.ndarray, camera: np.ndarray) -> None:
        """Add one voxelized frame: ``labels`` per point (vocabulary index, -1 none), per instance its
        class (``instance_classes``, -1 none) and track; ``camera`` (map frame) for eviction."""
        self.frames += 1
        cols = self._columns(class_names)
        nv, nc = len(fv.keys), len(class_names)
        if nv == 0:
            return
        votes = np.bincount(fv.inv.astype(np.int64) * (nc + 1) + (labels + 1),
                            minlength=nv * (nc + 1)).reshape(nv, nc + 1)[:, 1:]
        colour = np.zeros(nv, np.uint32)
        colour[fv.inv] = rgb
        idx = self._insert(fv.keys)
        block = self._counts[idx]
        block[:, cols] = np.minimum(block[:, cols].astype(np.int64) + votes, 65535).astype(np.uint16)
        self._counts[idx] = block
        self._rgb[idx] = colour
        self._seen[idx] = self.frames
        self._assign(fv, idx, track_ids, [class_names[c] if c >= 0 else "" for c in np.asarray(instance_classes)])
        self._evict(camera)

    def _insert(self, fkeys: np.ndarray) -> np.ndarray:
        """Slots of the (sorted) frame keys; new keys get new slots at the end."""
        pos = np.searchsorted(self._sorted, fkeys)
        found = pos < len(self._sorted)
        found[found] = self._sorted[pos[found]] == fkeys[found]
        slots = np.empty(len(fkeys), np.int64)
        slots[found] = self._slot[pos[found]]
        new = ~found
        k = int(new.sum())
        if k:
            self._reserve(self._n + k)
            fresh = np.arange(self._n, self._n + k)
            self._keys[fresh] = fkeys[new]
            for a in (self._counts, self._rgb, self._obj, self._seen):
                a[fresh] = 0  # slots freed by an eviction hold old data
            self._n += k
            self._sorted = np.insert(self._sorted, pos[new], fkeys[new])
            self._slot = np.insert(self._slot, pos[new], fresh)
            slots[new] = fresh
        return slots

    def _assign(self, fv: "FrameVoxels", idx: np.ndarray, track_ids: np.ndarray, class_names: list[str]) -> None:
        """Objects of this frame's instances, decided together from one (instance, object) count table:
        the object the track fed before, else the object owning most of the instance's voxels (at least
        ``join_overlap`` of them), else a new one; an object mostly covered by the instance merges in."""
        has = fv.owner > 0
        slots, inst = idx[has], fv.owner[has]
        n = len(track_ids)
        owner = self._obj[slots].astype(np.int64)
        m = int(owner.max(initial=0)) + 1
        table = np.bincount(inst * m + owner, minlength=(n + 1) * m).reshape(n + 1, m)
        table[:, 0] = 0
        size = np.bincount(inst, minlength=n + 1)
        before = np.bincount(self.obj, minlength=m)  # voxels per object before this frame (merge test)
        lut = np.zeros(n + 1, np.uint32)
        merged: dict[int, int] = {}
        # everything the per-instance decisions read, as Python lists once (no numpy scalars in the loop)
        best = table.argmax(1)
        best_count = table[np.arange(n + 1), best].tolist()
        best, size_l, tracks = best.tolist(), size.tolist(), [int(t) for t in np.asarray(track_ids).tolist()]
        rows_nz, cols_nz = np.nonzero(table)
        vals_nz, before_nz = table[rows_nz, cols_nz].tolist(), before[cols_nz].tolist()
        owners: dict[int, list[tuple[int, int, int]]] = {}
        for r, c, v, b in zip(rows_nz.tolist(), cols_nz.tolist(), vals_nz, before_nz):
            owners.setdefault(r, []).append((c, v, b))
        for i in range(1, n + 1):
            if not size_l[i]:
                continue
            track = tracks[i - 1]
            oid = self._track_object.get(track)
            oid = merged.get(oid, oid)
            if oid not in self.objects:
                b = best[i]
                oid = b if b and best_count[i] >= self.join_overlap * size_l[i] else None
                oid = merged.get(oid, oid)
            if oid is None:
                oid = self._next_object
                self._next_object += 1
                self.objects[oid] = MapObject(oid)
            for other, count, before_other in owners.get(i, ()):  # ids as they were before this frame
                target = merged.get(other, other)
                if target != oid and target in self.objects and count >= 0.5 * before_other:
                    self._merge(target, oid)
                    merged = {k: (oid if v == target else v) for k, v in merged.items()}
                    merged[target] = oid
                    lut[lut == target] = oid
            lut[i] = oid
            self._track_object[track] = oid
            ob = self.objects[oid]
            ob.views += 1
            if class_names[i - 1]:
                ob.votes[class_names[i - 1]] = ob.votes.get(class_names[i - 1], 0) + 1
        self._obj[slots] = lut[inst]

    def forget_tracks(self, live) -> None:
        """Drop the track -> object links of tracks that ended (their ids never come back): the table
        stays the size of the live tracks instead of growing with every track a long run has seen."""
        self._track_object = {t: o for t, o in self._track_object.items() if t in live}

    def objects_of(self, track_ids) -> np.ndarray:
        """The object each track fed (0: none, e.g. an instance without valid depth)."""
        return np.array([self._track_object.get(int(t), 0) for t in track_ids], np.int64)

    def _merge(self, src: int, dst: int) -> None:
        obj = self.obj
        obj[obj == src] = dst
        a, b = self.objects.pop(src), self.objects[dst]
        b.views += a.views
        self.embeddings.merge(src, dst)
        for k, v in a.votes.items():
            b.votes[k] = b.votes.get(k, 0) + v
        for t, o in self._track_object.items():
            if o == src:
                self._track_object[t] = dst

    def _evict(self, camera: np.ndarray) -> None:
        if self._n <= self.max_voxels:
            return
        drop_n = self._n - int(0.9 * self.max_voxels)
        dist = np.linalg.norm(self.centres() - camera, axis=1)
        keep = np.ones(self._n, bool)
        keep[np.lexsort((-dist, self.seen))[:drop_n]] = False  # oldest first, then farthest
        n = int(keep.sum())
        for name in ("_keys", "_counts", "_rgb", "_obj", "_seen"):
            a = getattr(self, name)
            a[:n] = a[: self._n][keep]
        self._n = n
        self._slot = np.argsort(self.keys, kind="stable")
        self._sorted = self.keys[self._slot]
        alive = set(np.unique(self.obj).tolist())
        self.objects = {k: v for k, v in self.objects.items() if k in alive}
        self.embeddings.keep(self.objects)

    # ------------------------------------------------------------------ queries
    def centres(self) -> np.ndarray:
        return ((unpack(self.keys) + 0.5) * self.voxel_size).astype(np.float32)

    def labels(self, class_names: list[str]) -> np.ndarray:
        """(N,) class + 1 in ``class_names`` of each voxel's strongest evidence; 0 = none or not in them."""
        out = np.zeros(len(self.keys), np.uint16)
        if len(self.keys) == 0 or self.counts.shape[1] == 0:
            return out
        best = self.counts.argmax(1)
        has = self.counts.max(1) > 0
        lut = np.zeros(len(self.names), np.uint16)
        for i, n in enumerate(class_names):
            if n in self._col:
                lut[self._col[n]] = i + 1
        out[has] = lut[best[has]]
        return out

    def object_stats(self, min_voxels: int = 1) -> list[ObjectStats]:
        if len(self.keys) == 0:
            return []
        c = self.centres().astype(np.float64)
        order = np.argsort(self.obj, kind="stable")
        ids, starts = np.unique(self.obj[order], return_index=True)
        counts = np.diff(np.append(starts, len(order)))
        sums = np.add.reduceat(c[order], starts, axis=0)
        mins = np.minimum.reduceat(c[order], starts, axis=0) - self.voxel_size / 2
        maxs = np.maximum.reduceat(c[order], starts, axis=0) + self.voxel_size / 2
        out = []
        for j, oid in enumerate(ids.tolist()):
            if oid == 0 or oid not in self.objects or counts[j] < min_voxels:
                continue
            ob = self.objects[oid]
            name, conf = ob.label()
            out.append(ObjectStats(oid, name, conf, ob.views, int(counts[j]), sums[j] / counts[j], mins[j], maxs[j]))
        return out
