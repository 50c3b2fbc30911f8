"""``~/map/query`` over DDS with real posed 7-Scenes frames (tiny models): the answer equals a brute-force
cosine between the objects' embeddings (read back from the map's own file after a clean stop) and the text
embedded here by open_clip's own ``encode_text`` over the 14 ViLD templates; the ids are on ``~/map/objects``;
``top_k`` and the order hold; bad texts are answered with a reason and the node keeps serving; the hits
appear on ``~/map/query_markers``. With SAM 3 (no CLIP) the service says why it cannot answer."""
import time

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosharness import call_service
from test_map_restart import MapRun
from visualization_msgs.msg import Marker, MarkerArray

from sam_ovseg_ros.srv import QueryObjects
from sam_ovseg_ros.tools import samplebag

pytestmark = [pytest.mark.dds, pytest.mark.model]

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def text_embedding(weights_dir, text: str) -> np.ndarray:
    """open_clip's encode_text of the ViLD templates filled with ``text``, each normalised, mean, normalised."""
    import open_clip
    import torch

    from sam_ovseg_ros import model_registry
    from sam_ovseg_ros.core.config import NodeConfig
    from sam_ovseg_ros.ovseg.config import VILD_TEMPLATES

    models = model_registry.build(NodeConfig(profile="tiny", device="cpu", weights_dir=str(weights_dir)),
                                  log=lambda s: None, warmup=False)
    clip = models.ovseg.model.clip_adapter.clip_model
    tokens = open_clip.get_tokenizer("ViT-L-14")([t.format(text) for t in VILD_TEMPLATES])
    with torch.no_grad():
        f = clip.encode_text(tokens).double()
    f = f / f.norm(dim=-1, keepdim=True)
    f = f.mean(0)
    return (f / f.norm()).numpy()


def query(run, text: str, top_k: int = 0):
    return call_service(run.h, QueryObjects, f"/{run.ns}/sam_ovseg/map/query",
                        QueryObjects.Request(text=text, top_k=top_k), timeout=60)


def test_query_answers_with_the_most_similar_objects(rclpy_context, tmp_path):
    save = tmp_path / "map"
    run = MapRun("t_query", save, tmp_path, **{"map.autosave_period": 0.0})
    markers = []
    run.h.node.create_subscription(MarkerArray, f"/{run.ns}/sam_ovseg/map/query_markers", markers.append, LATCHED)
    try:
        run.connect()
        run.send(samplebag.load_posed_frames()[:4], 10)
        listed = run.latest("objects", lambda m: m.header.stamp.sec == 13 and len(m.objects) >= 5)
        objects = {o.id: o for o in listed.objects}
        answers = {}
        for text, k in (("a chair", 0), ("something to sit on", 3), ("a chair", 500)):
            r = query(run, text, k)
            assert r.success, r.message
            answers[(text, k)] = r
        for bad, why in (("", "empty"), ("x" * 300, "at most 256"), ("mug\x07", "control")):
            r = query(run, bad)
            assert not r.success and why in r.message and not r.ids
        again = query(run, "a chair", 4)  # still serving after the refusals
        assert again.success and list(again.ids) == list(answers[("a chair", 0)].ids)[:4]
        end = time.monotonic() + 10  # the last query's hits are drawn: a DELETEALL, then a box and a label each
        while (not markers or len(markers[-1].markers) != 1 + 2 * 4) and time.monotonic() < end:
            time.sleep(0.05)
        assert markers and len(markers[-1].markers) == 1 + 2 * 4
        assert markers[-1].markers[0].action == Marker.DELETEALL
        assert [m.type for m in markers[-1].markers[1:3]] == [Marker.CUBE, Marker.TEXT_VIEW_FACING]
        assert markers[-1].markers[0].header.frame_id == "map"
    finally:
        assert run.close() == 0, run.node.log()[-3000:]
    with np.load(save / "map_state.npz") as z:  # the objects' embeddings as the node holds them
        sums, ids = z["embed_sums"].astype(np.float64), z["embed_ids"]
    unit = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    keep = np.isin(ids, list(objects))
    assert keep.sum() >= 5
    for (text, k), r in answers.items():
        cos = unit[keep] @ text_embedding(tmp_path / "w", text)
        order = np.lexsort((ids[keep], -cos))[: (k or 10)]
        assert list(r.ids) == ids[keep][order].tolist(), text
        assert np.allclose(r.scores, cos[order], atol=1e-4)
        assert list(r.scores) == sorted(r.scores, reverse=True) and len(r.ids) == min(k or 10, keep.sum())
        assert set(r.ids) <= set(objects)
        assert list(r.class_names) == [objects[i].class_name for i in r.ids]
        assert [(c.x, c.z) for c in r.centroids] == [(objects[i].centroid.x, objects[i].centroid.z) for i in r.ids]


def test_sam3_has_no_clip_to_answer_with(rclpy_context, tmp_path):
    run = MapRun("t_query3", tmp_path / "map", tmp_path, segmenter="sam3")
    try:
        run.connect()
        r = query(run, "a chair")
        assert not r.success and "sam3" in r.message and "no CLIP" in r.message
    finally:
        assert run.close() == 0, run.node.log()[-3000:]
