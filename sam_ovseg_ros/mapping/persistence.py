"""The map on disk, so that it survives the node: ``map_state.npz`` in ``map.save_dir``.

Everything the map is made of is saved, exactly: the voxels (keys, class evidence per class *name*,
colour, object, the frame each was last seen in), the objects (views, votes in their order, CLIP
embedding sums with the name of the model that made them), which object each track fed, the class
names, and the counters of objects, tracks and frames, so ids are never reused across restarts.
The file is a NumPy ``.npz`` without pickles (arrays and one JSON
header), written to a temporary file in the same folder, flushed to disk and renamed over the old one:
a crash mid-save leaves the previous file whole.

Loading checks the header (format, version, ``map.frame``, voxel size) and every array's shape and
type; anything else raises ``MapFileError`` with the reason, and the caller starts from an empty map.
Evidence is kept by class name, so a vocabulary changed between runs finds its names' evidence again.
"""
from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sam_ovseg_ros.mapping.voxel_map import MapObject

MAP_FILE = "map_state.npz"
FORMAT = "sam_ovseg_ros map"
VERSION = 1


class MapFileError(ValueError):
    """A map file that cannot be used (damaged, or made for another frame, voxel size or format)."""


@dataclass
class MapState:
    """A copy of everything persistent (taken under the mapper's lock, written outside it)."""
    header: dict
    arrays: dict[str, np.ndarray]


def capture(mapper, frame: str, embedding_model: str = "") -> MapState:
    """Copy the mapper's persistent state (the frame path waits only for these copies)."""
    with mapper._lock:
        m, tr = mapper.map, mapper.tracker
        objects = list(m.objects.values())
        col = {n: i for i, n in enumerate(m.names)}  # every voted name has an evidence column (integrate)
        vote_obj, vote_name, vote_n = [], [], []
        for i, ob in enumerate(objects):
            for name, n in ob.votes.items():
                vote_obj.append(i)
                vote_name.append(col[name])
                vote_n.append(n)
        header = {"format": FORMAT, "version": VERSION, "frame": frame, "voxel_size": m.voxel_size,
                  "names": list(m.names), "next_object": m._next_object, "next_track": tr._next,
                  "frames": m.frames, "stamp_ns": mapper.stamp_ns, "embedding_model": embedding_model}
        arrays = {
            "keys": m.keys.copy(), "counts": m.counts.copy(), "rgb": m.rgb.copy(), "object": m.obj.copy(),
            "seen": m.seen.copy(),
            "object_ids": np.array([o.id for o in objects], np.int64),
            "object_views": np.array([o.views for o in objects], np.int64),
            "vote_object": np.array(vote_obj, np.int64), "vote_name": np.array(vote_name, np.int64),
            "vote_count": np.array(vote_n, np.int64),
            "track_ids": np.array(list(m._track_object), np.int64),
            "track_objects": np.array(list(m._track_object.values()), np.int64),
            **m.embeddings.state(),
        }
    return MapState(header, arrays)


def write(folder: Path, state: MapState) -> Path:
    """Atomically (temporary file, fsync, rename) to ``folder/map_state.npz``; returns the path."""
    folder.mkdir(parents=True, exist_ok=True)

    def dump(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, header=np.array(json.dumps(state.header)), **state.arrays)

    return atomic_write(folder / MAP_FILE, dump)


_DTYPES = {"keys": np.int64, "counts": np.uint16, "rgb": np.uint32, "object": np.uint32, "seen": np.int64,
           "object_ids": np.int64, "object_views": np.int64, "vote_object": np.int64, "vote_name": np.int64,
           "vote_count": np.int64, "track_ids": np.int64, "track_objects": np.int64}
# objects' CLIP embeddings (mapping/embeddings.py): optional, a map saved before they existed has none
_EMBED_DTYPES = {"embed_ids": np.int64, "embed_sums": np.float32, "embed_views": np.int64}


def read(path: Path, frame: str, voxel_size: float) -> MapState:
    """The state in ``path`` if it is whole and made for this frame and voxel size; else MapFileError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = ({"header"} | set(_DTYPES)) - files
            if missing:
                raise MapFileError(f"not a map file of this node (missing {sorted(missing)})")
            header = json.loads(str(z["header"]))
            arrays = {k: z[k] for k in _DTYPES}
            if set(_EMBED_DTYPES) <= files:
                arrays.update({k: z[k] for k in _EMBED_DTYPES})
    except MapFileError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise MapFileError(f"damaged or not a map file ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise MapFileError("not a map file of this node (format)")
    if header.get("version") != VERSION:
        raise MapFileError(f"format version {header.get('version')}, this node reads {VERSION}")
    if header.get("frame") != frame:
        raise MapFileError(f"made in frame '{header.get('frame')}', map.frame is '{frame}'")
    if header.get("voxel_size") != voxel_size:
        raise MapFileError(f"made with {header.get('voxel_size')} m voxels, map.voxel_size is {voxel_size}")
    _check(header, arrays)
    return MapState(header, arrays)


def _check(h: dict, a: dict[str, np.ndarray]) -> None:
    for k, dt in _DTYPES.items():
        if a[k].dtype != dt:
            raise MapFileError(f"damaged: {k} is {a[k].dtype}, not {np.dtype(dt)}")
    names = h.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise MapFileError("damaged: class names")
    n = len(a["keys"])
    if a["counts"].shape != (n, len(names)) or any(len(a[k]) != n for k in ("rgb", "object", "seen")):
        raise MapFileError("damaged: voxel arrays of different lengths")
    if len(np.unique(a["keys"])) != n:
        raise MapFileError("damaged: a voxel appears twice")
    m = len(a["object_ids"])
    if len(a["object_views"]) != m or len({len(a[k]) for k in ("vote_object", "vote_name", "vote_count")}) != 1 \
            or len(a["track_ids"]) != len(a["track_objects"]):
        raise MapFileError("damaged: object arrays of different lengths")
    if (len(a["vote_object"]) and (a["vote_object"].min() < 0 or a["vote_object"].max() >= m)) or \
            (len(a["vote_name"]) and (a["vote_name"].min() < 0 or a["vote_name"].max() >= len(names))):
        raise MapFileError("damaged: votes out of range")
    ids = set(a["object_ids"].tolist())
    if not set(np.unique(a["object"]).tolist()) <= ids | {0}:
        raise MapFileError("damaged: voxels of unknown objects")
    for k in ("next_object", "next_track", "frames", "stamp_ns"):
        if not isinstance(h.get(k), int):
            raise MapFileError(f"damaged: {k}")
    if ids and max(ids) >= h["next_object"]:
        raise MapFileError("damaged: an object id at or past the id counter")
    if "embed_ids" in a:
        e, s = a["embed_ids"], a["embed_sums"]
        if any(a[k].dtype != dt for k, dt in _EMBED_DTYPES.items()) or s.ndim != 2 or len(s) != len(e) \
                or len(a["embed_views"]) != len(e):
            raise MapFileError("damaged: object embedding arrays")
        if not set(e.tolist()) <= ids or len(np.unique(e)) != len(e) or not np.isfinite(s).all() \
                or (len(e) and (a["embed_views"].min() < 1 or np.linalg.norm(s, axis=1).min() <= 0)):
            raise MapFileError("damaged: object embeddings")


def restore(mapper, state: MapState, embedding_model: str = "") -> str:
    """Replace the mapper's map and counters by ``state`` (read by ``read``). Object embeddings are taken
    when they were made by ``embedding_model``, else left out; returns why they were left out ("" if not)."""
    h, a = state.header, state.arrays
    with mapper._lock:
        m = mapper.map
        m.clear()
        m.names = list(h["names"])
        m._col = {n: i for i, n in enumerate(m.names)}
        n = len(a["keys"])
        m._keys, m._counts = a["keys"].copy(), a["counts"].copy()
        m._rgb, m._obj, m._seen = a["rgb"].copy(), a["object"].copy(), a["seen"].copy()
        m._n = n
        m._slot = np.argsort(m._keys, kind="stable")
        m._sorted = m._keys[m._slot]
        names = m.names
        objects = {int(i): MapObject(int(i), int(v)) for i, v in zip(a["object_ids"], a["object_views"])}
        order = a["object_ids"].tolist()
        for o, c, k in zip(a["vote_object"].tolist(), a["vote_name"].tolist(), a["vote_count"].tolist()):
            objects[order[o]].votes[names[c]] = k
        m.objects = objects
        m._track_object = dict(zip(a["track_ids"].tolist(), a["track_objects"].tolist()))
        m._next_object, m.frames = h["next_object"], h["frames"]
        mapper.tracker._next = max(mapper.tracker._next, h["next_track"])
        mapper.stamp_ns = h["stamp_ns"]
        dropped = ""
        if "embed_ids" in a and len(a["embed_ids"]):
            if h.get("embedding_model", "") == embedding_model:
                m.embeddings.load(a["embed_ids"], a["embed_sums"], a["embed_views"])
            else:
                dropped = (f"its {len(a['embed_ids'])} object embeddings were made by "
                           f"'{h.get('embedding_model', '')}', this node's CLIP is '{embedding_model}'")
    return dropped


def atomic_write(path: Path, write) -> Path:
    """``write(tmp_path)`` then rename over ``path``: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)  # the rename itself reaches the disk
    finally:
        os.close(dirfd)
    return path


class MapStore:
    """The map's file in the operator's folder: load at start-up, saves from a snapshot on a writer thread,
    removal on clear. A file that cannot be used is renamed aside (``map_state.refused-<time>.npz``) and
    kept, so no later save overwrites it."""

    def __init__(self, folder: Path, frame: str, voxel_size: float, log=print, warn=print,
                 embedding_model: str = "") -> None:
        self.folder, self.frame, self.voxel_size = folder, frame, voxel_size
        self.embedding_model = embedding_model
        self.path = folder / MAP_FILE
        self.log, self.warn = log, warn
        self._writing = threading.Lock()  # one save at a time
        self.saved_revision = -1
        self.last_save_s = 0.0

    def load(self, mapper) -> bool:
        """The saved map into ``mapper`` if there is a usable one; a refused file is set aside, with the reason."""
        if not self.path.exists():
            return False
        try:
            state = read(self.path, self.frame, self.voxel_size)
        except MapFileError as exc:
            aside = self.folder / f"map_state.refused-{time.strftime('%Y%m%d-%H%M%S')}.npz"
            os.replace(self.path, aside)
            self.warn(f"map: not loading {self.path}: {exc}. Starting with an empty map; the file is kept as "
                      f"{aside}")
            return False
        dropped = restore(mapper, state, self.embedding_model)
        if dropped:
            self.warn(f"map: {self.path}: {dropped}; the objects are kept without them (they are embedded again "
                      "as they are seen)")
        mapper.revision += 1
        self.saved_revision = mapper.revision
        self.log(f"map: loaded {self.path}: {len(state.arrays['keys'])} voxels, "
                 f"{len(state.arrays['object_ids'])} objects")
        return True

    def save(self, mapper, block: bool = True) -> Path | None:
        """Save if the map changed since the last save. The copy is taken here (under the mapper's lock);
        the file is written here (``block``) or on a thread. None when nothing changed or a save is running."""
        revision = mapper.revision
        if revision == self.saved_revision or not self._writing.acquire(blocking=block):
            return None
        try:
            state = capture(mapper, self.frame, self.embedding_model)
        except BaseException:
            self._writing.release()
            raise

        def run() -> None:
            try:
                t0 = time.perf_counter()
                write(self.folder, state)
                self.last_save_s = time.perf_counter() - t0
                self.saved_revision = revision
            except OSError as exc:
                self.warn(f"map: saving {self.path} failed: {exc}; the previous file is unchanged")
            finally:
                self._writing.release()

        if block:
            run()
        else:
            threading.Thread(target=run, name="sam_ovseg_map_save", daemon=True).start()
        return self.path

    def wait(self, timeout: float = 60.0) -> None:
        """Until a save on the writer thread is done."""
        if self._writing.acquire(timeout=timeout):
            self._writing.release()

    def remove(self) -> None:
        """The map was cleared: its file goes too (an empty map is what a restart should find)."""
        self.wait()
        if self.path.exists():
            self.path.unlink()
        self.saved_revision = -1
