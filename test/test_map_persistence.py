"""The map's own file (mapping/persistence.py) on a map of real posed 7-Scenes frames: save -> load is exact
(every voxel, its evidence, colour, object and age; objects, views and votes; track links; id counters), a
restored map then evolves exactly as the original; a map of another frame, voxel size or format version, and
damaged files, are refused with the reason and kept aside; evidence follows class names across vocabularies;
writes are atomic."""
import json
import zipfile

import numpy as np
import pytest

from sam_ovseg_ros.core.cloud import Backprojector, Intrinsics
from sam_ovseg_ros.core.depth import to_metres
from sam_ovseg_ros.mapping import persistence
from sam_ovseg_ros.mapping.mapper import Mapper
from sam_ovseg_ros.tools.samplebag import load_posed_frames

NAMES = ["wall", "floor", "cabinet", "table", "chair"]


@pytest.fixture(scope="module")
def frames():
    return load_posed_frames()


def new_mapper() -> Mapper:
    return Mapper(0.05, 10**7, 0.3, 15, 0.3, min_object_voxels=1, pixel_stride=2)


def feed(mapper: Mapper, frames, names=NAMES, stamp0: int = 0) -> None:
    """Each frame cut into 4 x 4 blocks as instances, classes varying by block and frame (real geometry)."""
    bp = Backprojector()
    for i, (_, rgb, depth, k, pose) in enumerate(frames):
        h, w = depth.shape
        inst = (np.arange(h)[:, None] * 4 // h) * 4 + (np.arange(w)[None, :] * 4 // w) + 1
        inst = inst.astype(np.uint16)
        classes = np.array([(b + i) % len(names) for b in range(16)], np.int64)
        semantic = (classes[inst - 1] + 1).astype(np.uint16)
        rays = bp.rays(Intrinsics.from_k(k.ravel(), w, h))
        mapper.step(inst, semantic, rgb, to_metres(depth, 0.001), rays, classes, names, pose, stamp0 + i)


def assert_same(a: Mapper, b: Mapper) -> None:
    ma, mb = a.map, b.map
    assert len(ma) == len(mb) > 1000
    order_a, order_b = np.argsort(ma.keys), np.argsort(mb.keys)
    assert np.array_equal(ma.keys[order_a], mb.keys[order_b])
    for name in ("rgb", "obj", "seen"):
        assert np.array_equal(getattr(ma, name)[order_a], getattr(mb, name)[order_b]), name
    ca = {n: ma.counts[order_a, i] for i, n in enumerate(ma.names)}
    cb = {n: mb.counts[order_b, i] for i, n in enumerate(mb.names)}
    assert ca.keys() == cb.keys() and all(np.array_equal(ca[n], cb[n]) for n in ca)
    assert {k: (o.views, list(o.votes.items())) for k, o in ma.objects.items()} == \
        {k: (o.views, list(o.votes.items())) for k, o in mb.objects.items()}
    assert ma._track_object == mb._track_object
    assert (ma._next_object, ma.frames, a.tracker._next, a.stamp_ns) == \
        (mb._next_object, mb.frames, b.tracker._next, b.stamp_ns)


def test_save_then_load_is_exact_and_evolves_the_same(frames, tmp_path):
    a = new_mapper()
    feed(a, frames[:8])
    assert len(a.map.objects) > 5 and a.tracker._next > 16
    path = persistence.write(tmp_path, persistence.capture(a, "map"))
    assert path == tmp_path / "map_state.npz" and not list(tmp_path.glob(".*tmp"))
    b = new_mapper()
    persistence.restore(b, persistence.read(path, "map", 0.05))
    assert_same(a, b)
    snap_a, snap_b = a.snapshot(NAMES), b.snapshot(NAMES)
    assert len(snap_a.objects) == len(snap_b.objects) > 5
    for o, p in zip(snap_a.objects, snap_b.objects):
        assert (o.id, o.class_name, o.confidence, o.views, o.voxels) == (p.id, p.class_name, p.confidence, p.views,
                                                                          p.voxels)
        assert np.array_equal(o.centroid, p.centroid) and np.array_equal(o.bbox_min, p.bbox_min)
    # tracks are not map state (2D masks of the last frames): a restarted node starts them over, with ids that
    # continue the saved counter. Then the restored map evolves exactly as the original whose tracks start over.
    a.reset_time()
    feed(a, frames[8:10], stamp0=100)
    feed(b, frames[8:10], stamp0=100)
    assert_same(a, b)


@pytest.mark.parametrize("change,reason", [
    (lambda h, a: h.update(frame="odom"), "made in frame 'odom', map.frame is 'map'"),
    (lambda h, a: h.update(voxel_size=0.1), "made with 0.1 m voxels, map.voxel_size is 0.05"),
    (lambda h, a: h.update(version=99), "format version 99, this node reads 1"),
    (lambda h, a: a.update(rgb=a["rgb"][:-1]), "voxel arrays of different lengths"),
    (lambda h, a: a.update(vote_name=a["vote_name"] + 1000), "votes out of range"),
    (lambda h, a: a.update(object=a["object"] + np.uint32(10**6)), "voxels of unknown objects"),
    (lambda h, a: a.update(keys=a["keys"].astype(np.int32)), "keys is int32"),
])
def test_other_maps_and_damage_are_refused_with_the_reason(frames, tmp_path, change, reason):
    a = new_mapper()
    feed(a, frames[:3])
    state = persistence.capture(a, "map")
    change(state.header, state.arrays)
    path = persistence.write(tmp_path, state)
    with pytest.raises(persistence.MapFileError, match=reason):
        persistence.read(path, "map", 0.05)


def test_truncated_and_foreign_files_are_refused_and_set_aside(frames, tmp_path):
    a = new_mapper()
    feed(a, frames[:3])
    path = persistence.write(tmp_path, persistence.capture(a, "map"))
    data = path.read_bytes()
    logs = []
    for bad in (data[: len(data) // 2], b"not a map at all", b""):
        path.write_bytes(bad)
        with pytest.raises(persistence.MapFileError, match="damaged or not a map file"):
            persistence.read(path, "map", 0.05)
        store = persistence.MapStore(tmp_path, "map", 0.05, log=logs.append, warn=logs.append)
        fresh = new_mapper()
        assert not store.load(fresh) and len(fresh.map) == 0
        assert str(path) in logs[-1] and "Starting with an empty map" in logs[-1]
        aside = sorted(tmp_path.glob("map_state.refused-*.npz"))
        assert aside and aside[-1].read_bytes() == bad and not path.exists()  # kept, and out of the way
        feed(fresh, frames[:1])
        store.save(fresh)  # a new save does not touch the refused file
        assert aside[-1].read_bytes() == bad and path.exists()
        for f in aside:
            f.unlink()
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("header.npy", b"junk")  # a valid zip whose header is not ours
    with pytest.raises(persistence.MapFileError):
        persistence.read(path, "map", 0.05)


def test_evidence_follows_class_names_across_vocabularies(frames, tmp_path):
    a = new_mapper()
    feed(a, frames[:4])
    path = persistence.write(tmp_path, persistence.capture(a, "map"))
    b = new_mapper()
    persistence.restore(b, persistence.read(path, "map", 0.05))
    later = ["chair", "sofa", "wall"]  # another order, one new name, some dropped
    la, lb = a.snapshot(later).label, b.snapshot(later).label
    assert np.array_equal(la, lb) and set(np.unique(lb)) >= {1, 3}
    assert (lb == 2).sum() == 0  # "sofa" has no evidence yet


def test_a_failed_write_leaves_the_previous_file_whole(frames, tmp_path, monkeypatch):
    a = new_mapper()
    feed(a, frames[:2])
    path = persistence.write(tmp_path, persistence.capture(a, "map"))
    before = path.read_bytes()
    feed(a, frames[2:4])

    def broken(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        persistence.write(tmp_path, persistence.capture(a, "map"))
    assert path.read_bytes() == before and not list(tmp_path.glob(".*tmp"))
    monkeypatch.undo()
    warned = []
    store = persistence.MapStore(tmp_path, "map", 0.05, warn=warned.append)
    monkeypatch.setattr(np, "savez", broken)
    store.save(a)
    assert "failed: disk full" in warned[-1] and path.read_bytes() == before


def test_store_saves_only_changes_and_clear_removes_the_file(frames, tmp_path):
    a = new_mapper()
    store = persistence.MapStore(tmp_path, "map", 0.05)
    assert store.save(a) is not None  # the empty map at start: revision 0 is not yet saved
    feed(a, frames[:2])
    assert store.save(a, block=False) == tmp_path / "map_state.npz"
    store.wait()
    assert store.save(a) is None  # nothing changed since
    header = json.loads(str(np.load(store.path)["header"]))
    assert header["frames"] == 2 and header["frame"] == "map"
    a.clear()
    store.remove()
    assert not store.path.exists()


def with_embeddings(mapper: Mapper, dim: int = 16, seed: int = 0) -> None:
    """Two views each of the objects (random unit embeddings, as crops would give)."""
    rng = np.random.default_rng(seed)
    ids = np.array(sorted(mapper.map.objects) * 2, np.int64)
    v = rng.normal(size=(len(ids), dim)).astype(np.float32)
    mapper.map.embeddings.add(ids, v / np.linalg.norm(v, axis=1, keepdims=True), rng.uniform(0.01, 0.3, len(ids)))


def test_object_embeddings_are_saved_exactly_and_only_for_the_same_model(frames, tmp_path):
    a = new_mapper()
    feed(a, frames[:4])
    with_embeddings(a)
    path = persistence.write(tmp_path, persistence.capture(a, "map", "ovseg_x.pth (default profile)"))
    b = new_mapper()
    assert persistence.restore(b, persistence.read(path, "map", 0.05), "ovseg_x.pth (default profile)") == ""
    ea, eb = a.map.embeddings, b.map.embeddings
    assert len(eb) == len(a.map.objects) > 5
    assert ea.ids.tolist() == eb.ids.tolist() and np.array_equal(ea.sums, eb.sums)
    assert np.array_equal(ea.views, eb.views)
    assert_same(a, b)
    # merges and evictions after the load act on the loaded rows as on the original's
    q = np.eye(16, dtype=np.float32)[0]
    assert [x.tolist() for x in ea.query(q, 5)] == [x.tolist() for x in eb.query(q, 5)]
    c = new_mapper()  # another CLIP: its embeddings would not compare with this one's texts
    why = persistence.restore(c, persistence.read(path, "map", 0.05), "tiny.pth (tiny profile)")
    assert "made by 'ovseg_x.pth (default profile)'" in why and "'tiny.pth (tiny profile)'" in why
    assert len(c.map.embeddings) == 0 and len(c.map) == len(a.map)  # the map itself is kept


def test_a_map_saved_without_embeddings_loads(frames, tmp_path):
    a = new_mapper()
    feed(a, frames[:2])
    state = persistence.capture(a, "map")
    for k in ("embed_ids", "embed_sums", "embed_views"):
        del state.arrays[k]
    b = new_mapper()
    persistence.restore(b, persistence.read(persistence.write(tmp_path, state), "map", 0.05), "m")
    assert_same(a, b) and len(b.map.embeddings) == 0


@pytest.mark.parametrize("change", [
    lambda a: a.update(embed_ids=a["embed_ids"] + 10**6),  # embeddings of unknown objects
    lambda a: a.update(embed_sums=a["embed_sums"][:, :-1].copy() * np.nan),
    lambda a: a.update(embed_views=a["embed_views"][:-1]),
    lambda a: a.update(embed_sums=a["embed_sums"].astype(np.float64)),
])
def test_damaged_embeddings_are_refused(frames, tmp_path, change):
    a = new_mapper()
    feed(a, frames[:2])
    with_embeddings(a)
    state = persistence.capture(a, "map")
    change(state.arrays)
    with pytest.raises(persistence.MapFileError, match="embedding"):
        persistence.read(persistence.write(tmp_path, state), "map", 0.05)


def test_track_links_do_not_grow_with_every_track_ever_seen(frames):
    """Ended tracks never come back (ids are not reused): their links to objects go, so a long run's table stays
    the size of the live tracks (it grew by every track before)."""
    a = new_mapper()
    for i in range(6):
        a.reset_time()  # every track ends: the next frame's instances start new ones
        feed(a, frames[i:i + 1], stamp0=10 * i)
        assert set(a.map._track_object) <= set(a.tracker.live()) and len(a.map._track_object) <= 16
    assert a.tracker._next > 6 * 16
