"""Map objects' CLIP embeddings and text queries, against independent arithmetic.

The table (mapping/embeddings.py) is checked against plain loops over the views it was given: an object's
embedding is the normalised area-weighted sum of its views' unit embeddings; merges add, evictions drop,
and a query's ranking is a brute-force cosine sort. With the tiny models: the pipeline's per-object
embedding equals the same sum over crops embedded one at a time, and vote mode's per-frame budget picks
the least-seen objects' instances.
"""
import numpy as np
import pytest

from sam_ovseg_ros.core.vocabulary import MAX_QUERY_CHARS, query_problem
from sam_ovseg_ros.mapping.embeddings import EmbeddingTable

E = 24


def unit(rng, n, dim=E):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def expected(views: dict[int, list]) -> dict[int, np.ndarray]:
    """Per object: sum of w * e over its views, normalised (float64, a loop)."""
    out = {}
    for oid, vs in views.items():
        acc = np.zeros(len(vs[0][0]))
        for e, w in vs:
            acc += w * e.astype(np.float64)
        out[oid] = acc / np.linalg.norm(acc)
    return out


def test_embedding_is_the_area_weighted_mean_of_views():
    rng = np.random.default_rng(1)
    t = EmbeddingTable()
    views: dict[int, list] = {}
    for _ in range(30):  # frames of 5 views of objects 1..12, some objects twice in a frame
        ids = rng.integers(1, 13, 5)
        emb, w = unit(rng, 5), rng.uniform(0.001, 0.3, 5)
        t.add(ids, emb, w)
        for i, e, ww in zip(ids.tolist(), emb, w):
            views.setdefault(i, []).append((e, ww))
    exp = expected(views)
    assert sorted(t.ids.tolist()) == sorted(exp)
    for oid, e in exp.items():
        assert np.allclose(t.embedding(oid), e, atol=2e-6)
    assert t.views_of([1, 2, 99]).tolist() == [len(views.get(1, [])), len(views.get(2, [])), 0]


def test_weights_matter():
    """A large view outweighs a small one: the result is not the plain mean."""
    t = EmbeddingTable()
    a, b = np.eye(E, dtype=np.float32)[:2]
    t.add([5, 5], np.stack([a, b]), np.array([0.3, 0.1]))
    e = t.embedding(5)
    assert np.allclose(e[:2], np.array([3, 1]) / np.sqrt(10), atol=1e-6)


def test_merge_adds_and_evict_drops():
    rng = np.random.default_rng(2)
    t = EmbeddingTable()
    views: dict[int, list] = {}
    for oid in (1, 2, 3, 4):
        emb, w = unit(rng, 3), rng.uniform(0.01, 0.2, 3)
        t.add([oid] * 3, emb, w)
        views[oid] = list(zip(emb, w))
    t.merge(2, 1)
    views[1] += views.pop(2)
    t.merge(4, 9)  # into an object without an embedding: the row is renamed
    views[9] = views.pop(4)
    t.merge(77, 1)  # an object without an embedding merges: nothing changes
    t.keep({1, 9})  # 3 was evicted
    views.pop(3)
    exp = expected(views)
    assert sorted(t.ids.tolist()) == [1, 9]
    for oid, e in exp.items():
        assert np.allclose(t.embedding(oid), e, atol=2e-6)
    assert t.views_of([1, 9]).tolist() == [6, 3]
    assert t.embedding(3) is None and t.embedding(2) is None


def test_query_equals_brute_force_cosine():
    rng = np.random.default_rng(3)
    t = EmbeddingTable()
    ids = rng.permutation(np.arange(1, 401))
    emb = unit(rng, 400)
    t.add(ids, emb, rng.uniform(0.01, 0.5, 400))
    t.add(ids[:100], unit(rng, 100), rng.uniform(0.01, 0.5, 100))  # second views of some
    q = unit(rng, 1)[0]
    brute = {int(i): float(np.dot(t.embedding(int(i)).astype(np.float64), q)) for i in ids}
    order = sorted(brute, key=lambda i: (-brute[i], i))
    got_ids, got_scores = t.query(q, 15)
    assert got_ids.tolist() == order[:15]
    assert np.allclose(got_scores, [brute[i] for i in order[:15]], atol=1e-5)
    assert np.all(np.diff(got_scores) <= 0)
    allowed = set(order[::2])  # only what ~/map/objects lists may be answered
    got_ids, _ = t.query(q, 15, allowed)
    assert got_ids.tolist() == [i for i in order if i in allowed][:15]
    assert len(t.query(q, 1000)[0]) == 400 and len(t.query(q, 0)[0]) == 0


def test_query_ties_go_to_the_lower_id():
    t = EmbeddingTable()
    e = np.eye(E, dtype=np.float32)[0]
    t.add([8, 3, 5], np.stack([e, e, e]), np.array([0.1, 0.2, 0.3]))
    assert t.query(e, 3)[0].tolist() == [3, 5, 8]


def test_state_round_trip():
    rng = np.random.default_rng(4)
    t = EmbeddingTable()
    t.add(rng.integers(1, 50, 80), unit(rng, 80), rng.uniform(0.01, 0.5, 80))
    u = EmbeddingTable()
    u.load(**{k.removeprefix("embed_"): v for k, v in t.state().items()})
    assert u.ids.tolist() == t.ids.tolist() and np.array_equal(u.sums, t.sums) and np.array_equal(u.views, t.views)
    q = unit(rng, 1)[0]
    assert [a.tolist() for a in u.query(q, 7)] == [a.tolist() for a in t.query(q, 7)]


def test_other_dimensions_refused():
    t = EmbeddingTable()
    t.add([1], unit(np.random.default_rng(5), 1), [0.1])
    with pytest.raises(ValueError, match="dimensions"):
        t.add([2], np.ones((1, E + 1), np.float32), [0.1])


def test_query_text_rules():
    assert query_problem("a red mug") is None
    assert query_problem("ein Stuhl, über dem Tisch") is None
    assert "empty" in query_problem("   ")
    assert str(MAX_QUERY_CHARS) in query_problem("x" * (MAX_QUERY_CHARS + 1))
    assert "control" in query_problem("mug\x00/etc/passwd")


# ---------------------------------------------------------------------------------------- with the tiny models
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sam_ovseg_ros import model_registry
    from sam_ovseg_ros.core.config import NodeConfig

    cfg = NodeConfig(profile="tiny", device="cpu", weights_dir=str(tmp_path_factory.mktemp("w")))
    return cfg, model_registry.build(cfg, log=lambda s: None, warmup=False)


@pytest.mark.model
@pytest.mark.selfcheck
@pytest.mark.parametrize("mode,budget", [("vote", 256), ("vote", 2), ("mask_clip", 2)])
def test_pipeline_objects_hold_their_crops_embeddings(tiny, mode, budget):
    """Three posed 7-Scenes frames through the pipeline: each object's embedding is the area-weighted sum of
    its instances' crop embeddings, each crop embedded here alone from the instance's SAM mask (found again
    by running the segmenter and the instance painter), the instances chosen as stated: every one in
    mask_clip mode, else the ``budget`` whose objects have the fewest embedded views, larger first."""
    import dataclasses

    import torch

    from sam_ovseg_ros.core.cloud import Intrinsics
    from sam_ovseg_ros.core.frame_pipeline import Outputs, Pipeline
    from sam_ovseg_ros.core.frame_types import Frame
    from sam_ovseg_ros.core.instances import masks_to_instances
    from sam_ovseg_ros.mapping.mapper import Mapper
    from sam_ovseg_ros.tools.samplebag import load_posed_frames

    base, models = tiny
    cfg = dataclasses.replace(base, fusion=dataclasses.replace(base.fusion, mode=mode),
                              map=dataclasses.replace(base.map, embed_per_frame=budget))
    mapper = Mapper(0.05, 1_000_000, 0.3, 15, 0.3, 1, 2)
    merges = []
    real_merge = mapper.map.embeddings.merge
    mapper.map.embeddings.merge = lambda s, d: (merges.append((s, d)), real_merge(s, d))
    pipe = Pipeline(models, mapper)
    views: dict[int, list] = {}
    merged = 0
    for _, rgb, depth, k, pose in load_posed_frames()[:3]:
        h, w = depth.shape
        frame = Frame(rgb, depth, Intrinsics.from_k(k, w, h), pose=pose)
        res = pipe.process(frame, cfg, Outputs(points=False, overlay=False))
        for src, dst in merges:  # objects merged by this frame (before its crops were embedded): views move
            if src in views:
                views.setdefault(dst, []).extend(views.pop(src))
        merged, merges[:] = merged + len(merges), []
        seg = models.segment(res.depth_colormap, cfg, list(cfg.classes))  # the same masks, made again
        inst, order = masks_to_instances(seg.masks, seg.areas, seg.boxes)
        assert np.array_equal(inst, res.instances)
        tracks = np.array([s.track_id for s in res.segments], np.int64)
        oids = mapper.map.objects_of(tracks)
        areas = np.bincount(res.instances.ravel(), minlength=len(tracks) + 1)[1:]
        rows = [i for i in range(len(tracks)) if oids[i] > 0 and areas[i] > 0]
        if mode == "vote":
            seen = {o: len(v) for o, v in views.items()}
            rows = sorted(rows, key=lambda i: (seen.get(int(oids[i]), 0), -areas[i], i))[:budget]
        for i in rows:
            with torch.inference_mode():
                e = models.ovseg.mask_embeddings(rgb, np.asarray(seg.masks)[order[i]][None])[0].numpy()
            views.setdefault(int(oids[i]), []).append((e, areas[i] / (h * w)))
    assert merged >= (1 if budget == 256 else 0)  # the frames do merge objects: a sum of sums is checked too
    table = mapper.map.embeddings
    assert sorted(table.ids.tolist()) == sorted(views)
    assert len(views) >= 5 and sum(len(v) for v in views.values()) >= (6 if budget == 2 else 15)
    exp = expected(views)
    for oid, e in exp.items():
        assert np.allclose(table.embedding(oid), e, atol=1e-5), oid
    assert table.views_of(list(views)).tolist() == [len(v) for v in views.values()]



def test_ties_at_the_cut_go_to_the_lower_id():
    """Equal scores across the top_k boundary: the lower ids are answered, whatever the partial sort picked."""
    t = EmbeddingTable()
    e = np.eye(E, dtype=np.float32)
    ids = np.arange(40, 0, -1)  # rows in descending id order
    t.add(ids, np.stack([e[0]] * 40), np.full(40, 0.1))
    t.add([99], e[1][None], [0.1])
    assert t.query(e[0], 5)[0].tolist() == [1, 2, 3, 4, 5]
