"""SAM 3 text-prompted segmenter: the library's own post-processing reproduced for batched prompts,
cached text features, the tiny profile on real frames, clear errors for a missing folder, and the node
over DDS with segmenter:=sam3 (no OVSeg) including a run-time vocabulary change."""
import numpy as np
import pytest
import torch
from rosharness import check_frame, node_rig, set_params
from scannet import load

from sam_ovseg_ros.core.weights import WeightsError
from sam_ovseg_ros.segmenters import sam3

pytestmark = pytest.mark.model

NAMES = ["wall", "floor", "chair", "table", "door"]


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    return sam3.Sam3Segmenter(sam3.tiny_folder(tmp_path_factory.mktemp("w")))


@pytest.mark.parametrize("frame", ["1660", "5560"])
def test_batched_prompts_equal_the_library_post_processing(seg, frame):
    """Per name: processor(image, text) -> Sam3Model -> post_process_instance_segmentation, against our one
    batch of all names with image features computed once and cached text features."""
    rgb, _, _ = load(frame)
    ours = seg.segment(rgb, NAMES, 0.26, 0.5)
    total = 0
    for i, name in enumerate(NAMES):
        inputs = seg.processor(images=rgb, text=name, return_tensors="pt")
        with torch.inference_mode():
            ref = seg.processor.post_process_instance_segmentation(
                seg.model(**inputs), threshold=0.26, mask_threshold=0.5, target_sizes=[rgb.shape[:2]])[0]
        mine = ours.classes == i
        assert int(mine.sum()) == len(ref["scores"]), name
        total += len(ref["scores"])
        if len(ref["scores"]):
            assert (ours.scores[mine] - ref["scores"]).abs().max() <= 1e-6  # batch vs single: float noise
            assert (ours.boxes[mine] - ref["boxes"]).abs().max() <= 1e-4
            assert (ours.masks[mine] != ref["masks"]).float().mean() <= 1e-5  # a pixel at the threshold at most
    assert total >= 3 and ours.masks.shape[1:] == rgb.shape[:2] and ours.masks.dtype == torch.bool


def test_text_features_are_cached_per_name(seg):
    before = seg.cached()
    seg.text_features(["cache test one", "cache test two"])
    seg.text_features(["cache test two", "cache test three", "cache test one"])
    assert seg.cached() - before == 3
    f1, m1 = seg.text_features(["cache test three"])
    f2, _ = seg.text_features(["cache test one", "cache test three"])
    assert torch.equal(f1[0], f2[1]) and m1.shape == (1, 32)


def test_tiny_profile_gives_several_instances_of_several_classes(seg):
    for frame in ("1660", "2760", "5560"):
        rgb, _, _ = load(frame)
        out = seg.segment(rgb, NAMES, 0.262, 0.5)
        areas = out.masks.flatten(1).sum(1)
        assert len(out.scores) >= 3 and len(set(out.classes.tolist())) >= 2 and (areas > 0).all()


def test_missing_or_incomplete_folder_names_what_is_missing(tmp_path):
    with pytest.raises(WeightsError, match="SAM 3 folder not found.*huggingface.co/facebook/sam3"):
        sam3.Sam3Segmenter(tmp_path / "nope")
    (tmp_path / "sam3").mkdir()
    (tmp_path / "sam3" / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="lacks processor_config.json.*model\\*.safetensors.*tokenizer.json"):
        sam3.Sam3Segmenter(tmp_path / "sam3")


# ------------------------------------------------------------------ through the node
@pytest.fixture(scope="module")
def rig(rclpy_context, tmp_path_factory):
    with node_rig("t_sam3", {"sync.slop": 0.0, "segmenter": "sam3", "classes": NAMES, "diagnostics.period": 1.0},
                  tmp_path_factory) as r:
        yield r


@pytest.mark.dds
def test_node_with_sam3_and_a_vocabulary_change(rig):
    node, h = rig
    assert "sam3_tiny_seed" in node.log()  # the models came from the SAM 3 folder
    rgb, d, k = load("1660")
    h.publish(rgb, d, k, 10**9)
    out = h.wait_stamp(10**9, timeout=90)
    _, inst, sem, segs = check_frame(out, rgb, d, k, 10**9, NAMES)
    assert len(segs) >= 2 and any(s.class_id for s in segs)
    assert all(0.0 < s.score <= 1.0 and s.class_score == s.score for s in segs)  # SAM 3's score is the class's
    assert all(s.class_id > 0 for s in segs)  # every text-prompted instance has its class
    # a new vocabulary: the next frame is prompted with the new names only
    assert all(r.successful for r in set_params(h, {"classes": ["sofa", "lamp", "window"]}))
    h.publish(rgb, d, k, 2 * 10**9)
    out = h.wait_stamp(2 * 10**9, timeout=90)
    _, _, sem2, segs2 = check_frame(out, rgb, d, k, 2 * 10**9, ["sofa", "lamp", "window"])
    assert segs2 and {s.class_name for s in segs2} <= {"sofa", "lamp", "window"}
    assert set(np.unique(sem2)) <= {0, 1, 2, 3}
    assert node.wait_log("sam3_encoder", 10)
    status = [ln for ln in node.log().splitlines() if "median ms" in ln][-1]
    assert "sam3_decoder" in status and " ovseg " not in status and "sam_decoder" not in status  # no OVSeg, no SAM
