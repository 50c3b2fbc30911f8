"""SAM 2.1 backend: our generator equals transformers' automatic mask generation for the same model,
each prompt equals the library's documented point-prompt path on non-square frames, the tiny profile gives
several regions on real frames, clear errors for a missing folder, and the node over DDS with segmenter:=sam2
(labelled by OVSeg) with outputs consistent as for sam."""
import numpy as np
import pytest
import torch
from PIL import Image

from rosharness import check_frame, node_rig
from sam_ovseg_ros import sam, sam2
from sam_ovseg_ros.weights import WeightsError
from scannet import load, segmenter_inputs


@pytest.fixture(scope="module")
def prompter(tmp_path_factory):
    return sam2.load(sam2.tiny_folder(tmp_path_factory.mktemp("w")), "hiera_tiny")


@pytest.fixture(scope="module")
def frames():
    return segmenter_inputs()


def assert_same_masks(got, ref_masks, ref_boxes, ref_scores):
    """Mask for mask: the same count, each of ours with a reference mask of the same box and score where at
    most 0.01 % of pixels differ (a point prompt's coordinates are rounded to float32 in a different order:
    logits differ by 1e-10, which flips a pixel sitting on the threshold)."""
    assert len(got.masks) == len(ref_masks)
    free = list(range(len(ref_masks)))
    for m, b, s in zip(got.masks, got.boxes, got.scores):
        match = [j for j in free if abs(float(ref_scores[j]) - float(s)) <= 1e-5
                 and np.abs(np.asarray(ref_boxes[j]) - b).max() <= 1 and (ref_masks[j] != m).mean() <= 1e-4]
        assert match, (b, s)
        free.remove(match[0])


@pytest.mark.parametrize("params", [
    sam.GenParams(points_per_side=8, points_per_batch=20, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  box_nms_thresh=0.7, min_mask_region_area=0),
    sam.GenParams(points_per_side=12, points_per_batch=64, pred_iou_thresh=0.5, stability_score_thresh=0.2,
                  box_nms_thresh=0.8, min_mask_region_area=0),
], ids=["no-filters", "filters"])
def test_generator_equals_the_library_mask_generation(prompter, frames, params):
    """Same masks, boxes and scores as transformers' mask-generation pipeline with Sam2Model, mask for mask.
    Square crops of the frames: that pipeline scales points by the longest side (SAM 1's rule), right only
    for square images since SAM 2 squashes the image to its square input; the next test covers other shapes."""
    from transformers import pipeline

    gen = sam.MaskGenerator(prompter)
    ref_gen = pipeline("mask-generation", model=prompter.model, image_processor=prompter.processor, device="cpu")
    compared = 0
    for img in frames.values():
        img = np.ascontiguousarray(img[:, 80:560])
        got = gen.generate(img, params)
        ref = ref_gen(Image.fromarray(img), points_per_crop=params.points_per_side,
                      points_per_batch=params.points_per_batch, pred_iou_thresh=params.pred_iou_thresh,
                      stability_score_thresh=params.stability_score_thresh, crops_nms_thresh=params.box_nms_thresh,
                      output_bboxes_mask=True)
        ref_masks = [np.asarray(m) for m in ref["masks"]]
        nonempty = [i for i, m in enumerate(ref_masks) if m.any()]  # the library keeps empty masks; we drop them
        assert_same_masks(got, [ref_masks[i] for i in nonempty], ref["bounding_boxes"][nonempty].numpy(),
                          ref["scores"][nonempty].numpy())
        compared += len(nonempty)
    assert compared >= 8  # the comparison is not vacuous


def test_prompts_equal_the_library_point_path_on_a_non_square_frame(prompter, frames):
    """640x480: each grid point through Sam2Processor(input_points) -> Sam2Model -> post_process_masks, the
    library's documented point-prompt path, gives the same logits and IoU as our prompter."""
    img = frames["1660_rgb"]
    pts = np.array([[12.5, 7.0], [320.0, 240.0], [600.0, 470.0], [40.0, 455.0]])
    with torch.inference_mode():
        prompter.set_image(img)
        low, iou = prompter.predict(pts)
        ours = prompter.upscale(low)
        for i, (x, y) in enumerate(pts):
            inputs = prompter_inputs(prompter, img, [[[[float(x), float(y)]]]])
            out = prompter.model(**inputs, multimask_output=True)
            from transformers import Sam2Processor

            ref = Sam2Processor(image_processor=prompter.processor).post_process_masks(
                out.pred_masks, inputs["original_sizes"], binarize=False)[0][0]
            assert (ours[3 * i:3 * i + 3] - ref).abs().max() <= 1e-4
            assert (iou[3 * i:3 * i + 3] - out.iou_scores[0, 0]).abs().max() <= 1e-6


def prompter_inputs(prompter, img, points):
    from transformers import Sam2Processor

    proc = Sam2Processor(image_processor=prompter.processor)
    inputs = proc(images=img, input_points=points, return_tensors="pt")
    return {"pixel_values": inputs["pixel_values"], "input_points": inputs["input_points"],
            "input_labels": torch.ones(inputs["input_points"].shape[:-1], dtype=torch.int),
            "original_sizes": inputs["original_sizes"]}


def test_tiny_profile_gives_several_partial_masks_on_real_frames(prompter, frames):
    gen = sam.MaskGenerator(prompter)
    for name, img in frames.items():
        out = gen.generate(img, sam.PRESETS["tiny"])
        hw = img.shape[0] * img.shape[1]
        partial = [a for a, b in zip(out.areas, out.boxes) if a >= 500 and (b[2] - b[0]) * (b[3] - b[1]) < 0.8 * hw]
        assert len(partial) >= 3, name


def test_tiny_folder_roundtrips_through_the_loader(prompter, tmp_path):
    again = sam2.load(sam2.tiny_folder(tmp_path), "hiera_tiny")  # written afresh from the same seed
    for (k, v), (k2, v2) in zip(prompter.model.state_dict().items(), again.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_missing_or_incomplete_folder_names_what_is_missing(tmp_path):
    with pytest.raises(WeightsError, match="SAM 2.1 folder not found.*huggingface.co/facebook/sam2.1-hiera-small"):
        sam2.load(tmp_path / "nope", "hiera_small")
    (tmp_path / "s2").mkdir()
    (tmp_path / "s2" / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="lacks processor_config.json.*model\\*.safetensors.*hiera-large"):
        sam2.load(tmp_path / "s2", "hiera_large")
    (tmp_path / "s2" / "processor_config.json").write_text("{}")
    (tmp_path / "s2" / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(WeightsError, match="cannot load SAM 2.1 from"):
        sam2.load(tmp_path / "s2", "hiera_tiny")


# ------------------------------------------------------------------ through the node
NAMES = ["wall", "floor", "chair", "table", "door"]


@pytest.fixture(scope="module")
def rig(rclpy_context, tmp_path_factory):
    with node_rig("t_sam2", {"sync.slop": 0.0, "segmenter": "sam2", "classes": NAMES, "diagnostics.period": 1.0},
                  tmp_path_factory) as r:
        yield r


def test_node_with_sam2(rig):
    node, h = rig
    assert "sam2_tiny_seed" in node.log()  # the instances come from the SAM 2 folder
    rgb, d, k = load("1660")
    h.publish(rgb, d, k, 10**9)
    out = h.wait_stamp(10**9, timeout=90)
    _, inst, sem, segs = check_frame(out, rgb, d, k, 10**9, NAMES)
    assert len(segs) >= 3 and any(s.class_id for s in segs)  # SAM 2 instances, classes from OVSeg's vote
    assert node.wait_log("sam_decoder", 10)
    status = [ln for ln in node.log().splitlines() if "median ms" in ln][-1]
    assert "ovseg" in status and "sam3" not in status
