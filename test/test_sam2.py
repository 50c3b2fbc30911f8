"""SAM 2.1 backend against the original SAM 2 code (test/data/sam2_tiny, made by its make_golden.py): a released-
layout checkpoint loads strictly, our generator gives SAM2AutomaticMaskGenerator's masks mask for mask on real
640x480 frames, each prompt gives its image predictor's logits; the four released model layouts convert key for
key; the tiny profile gives several regions; clear errors; and the node over DDS with segmenter:=sam2."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rosharness import check_frame, node_rig
from scannet import load, segmenter_inputs

from sam_ovseg_ros.core.weights import WeightsError
from sam_ovseg_ros.segmenters import generator, sam2

pytestmark = pytest.mark.model

DATA = Path(__file__).resolve().parent / "data" / "sam2_tiny"
CHECKPOINT = DATA / "sam2.1_tiny_seed2.pt"


@pytest.fixture(scope="module")
def golden():
    return np.load(DATA / "golden.npz")


@pytest.fixture(scope="module")
def original():
    """The tiny model the original code ran, through our loader of released checkpoints."""
    return sam2.load(CHECKPOINT, "tiny")


@pytest.fixture(scope="module")
def frames():
    return segmenter_inputs()


def stability_tol(area: int) -> float:
    """Stability is |logits > 1| / |logits > -1|: a few pixels at those two levels move with the CPU's rounding,
    so it may differ by up to 3 pixels of the mask (2e-4 at least)."""
    return max(2e-4, 3.0 / max(int(area), 1))


def assert_same_masks(got, ref_masks, ref_boxes, ref_scores, ref_stability, iou_thresh, stab_thresh):
    """Mask for mask: each of ours has a reference mask of the same box (x0, y0, x1, y1) and score where at most
    0.01 % of pixels differ (float noise between CPUs flips a pixel on the threshold), and its stability within
    stability_tol. A mask may be kept on one side only if its score or stability lies within that tolerance of
    the filter's threshold. Returns the number of pairs."""
    free = list(range(len(ref_masks)))
    unmatched = []
    for m, b, s, st in zip(got.masks, got.boxes, got.scores, got.stability):
        match = [j for j in free if abs(float(ref_scores[j]) - float(s)) <= 1e-5
                 and np.abs(np.asarray(ref_boxes[j]) - b).max() <= 1 and (ref_masks[j] != m).mean() <= 1e-4]
        if not match:
            unmatched.append((float(s), float(st), int(m.sum())))
            continue
        j = match[0]
        assert abs(float(ref_stability[j]) - float(st)) <= stability_tol(ref_masks[j].sum()), (b, st, ref_stability[j])
        free.remove(j)
    unmatched += [(float(ref_scores[j]), float(ref_stability[j]), int(ref_masks[j].sum())) for j in free]
    for score, stab, area in unmatched:
        assert abs(score - iou_thresh) <= 1e-5 or abs(stab - stab_thresh) <= stability_tol(area), (score, stab)
    return len(got.masks) - (len(unmatched) - len(free))


@pytest.mark.parametrize("case", ["no_cleanup", "filters_cleanup"])
def test_generator_equals_the_original_sam2(original, golden, frames, case):
    """SAM2AutomaticMaskGenerator (SAM 2 1.1.0) on the rendered depth and colour of two frames: same masks,
    boxes, predicted IoU and stability. ``filters_cleanup`` has IoU and stability filters and min_mask_region_area
    100, which SAM 2 hands only to its low-resolution hole filling (its CUDA extension): no clean-up, as here."""
    side, batch, iou, stab, nms, area = json.loads(str(golden["cases"]))[case]
    gen = generator.MaskGenerator(original)
    compared = 0
    for name, img in frames.items():
        got = gen.generate(img, generator.GenParams(side, batch, iou, stab, nms, area))
        key = f"{case}/{name}"
        ref = np.unpackbits(golden[key + "/masks"], axis=-1)[..., : img.shape[1]].astype(bool)
        x, y, w, h = golden[key + "/boxes"].T
        compared += assert_same_masks(got, ref, np.stack([x, y, x + w, y + h], 1), golden[key + "/iou"],
                                      golden[key + "/stability"], iou, stab)
    assert compared >= 30  # the comparison is not vacuous


def test_prompts_equal_the_original_image_predictor(original, golden, frames):
    """Single points on the 640x480 colour frame (corners included: x / w and y / h onto the square input):
    low-resolution logits (SAM 2 returns them clamped to +-32) and the three IoU predictions."""
    with torch.inference_mode():
        original.set_image(frames["1660_rgb"])
        for i, xy in enumerate(golden["points"]):
            low, iou = original.predict(np.array([xy]))
            ref = torch.from_numpy(golden[f"points/{i}/low_res_logits"])
            assert (low.clamp(-32, 32) - ref).abs().max() <= 1e-2  # logits of ~1e4 before the clamp
            assert (iou - torch.from_numpy(golden[f"points/{i}/iou"])).abs().max() <= 1e-6


def test_released_checkpoints_of_every_size_convert_key_for_key():
    """The keys and shapes SAM 2 builds for hiera t/s/b+/l (what their .pt files hold) become exactly the
    transformers model's of our spec for that size; the video-memory keys are dropped."""
    from transformers import Sam2Model

    manifest = json.loads((DATA / "manifest.json").read_text())
    assert set(manifest) == set(sam2.FILES)
    for name, keys in manifest.items():
        converted = sam2.to_transformers({k: torch.empty(v, device="meta") for k, v in keys.items()})
        with torch.device("meta"):
            own = Sam2Model(sam2.config(sam2.SPECS[name])).state_dict()
        assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in own.items()}, name
        assert len(keys) - len(converted) >= 150  # memory attention, memory encoder, object pointers


def test_tiny_profile_gives_several_partial_masks_on_real_frames(tmp_path, frames):
    prompter = sam2.load(sam2.tiny_folder(tmp_path), "tiny")
    again = sam2.load(sam2.tiny_folder(tmp_path / "again"), "tiny")  # written afresh from the same seed
    for (k, v), (k2, v2) in zip(prompter.model.state_dict().items(), again.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    gen = generator.MaskGenerator(prompter)
    for name, img in frames.items():
        out = gen.generate(img, generator.PRESETS["tiny"])
        hw = img.shape[0] * img.shape[1]
        partial = [a for a, b in zip(out.areas, out.boxes) if a >= 500 and (b[2] - b[0]) * (b[3] - b[1]) < 0.8 * hw]
        assert len(partial) >= 3, name


def test_missing_foreign_or_incomplete_checkpoints_are_named(tmp_path):
    with pytest.raises(WeightsError, match=r"not found: .*sam2.1_hiera_small.pt.*dl.fbaipublicfiles.com.*"
                                           r"092824/sam2.1_hiera_small.pt"):
        sam2.load(tmp_path / "sam2.1_hiera_small.pt", "hiera_small")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(CHECKPOINT.read_bytes()[:4000])
    with pytest.raises(WeightsError, match="cannot read SAM 2.1 checkpoint"):
        sam2.load(corrupt, "tiny")
    sd = torch.load(CHECKPOINT, weights_only=True)
    del sd["model"]["sam_mask_decoder.iou_token.weight"]
    other = tmp_path / "other.pt"
    torch.save(sd, other)
    with pytest.raises(WeightsError, match="not a SAM 2.1 tiny checkpoint: 1 missing .*iou_token"):
        sam2.load(other, "tiny")
    with pytest.raises(WeightsError, match="not a SAM 2.1 hiera_large checkpoint: .*wrong shape"):
        sam2.load(CHECKPOINT, "hiera_large")  # a real size named for the tiny file
    with pytest.raises(WeightsError, match="unknown SAM 2.1 model type"):
        sam2.load(CHECKPOINT, "hiera_huge")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="lacks config.json or model\\*.safetensors"):
        sam2.load(tmp_path / "hf", "hiera_small")
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(WeightsError, match="cannot load SAM 2.1 from"):
        sam2.load(tmp_path / "hf", "hiera_small")


# ------------------------------------------------------------------ through the node
NAMES = ["wall", "floor", "chair", "table", "door"]


@pytest.fixture(scope="module")
def rig(rclpy_context, tmp_path_factory):
    with node_rig("t_sam2", {"sync.slop": 0.0, "segmenter": "sam2", "classes": NAMES, "diagnostics.period": 1.0},
                  tmp_path_factory) as r:
        yield r


@pytest.mark.dds
def test_node_with_sam2(rig):
    node, h = rig
    assert "sam2_tiny_seed" in node.log()  # the instances come from the SAM 2 model
    rgb, d, k = load("1660")
    h.publish(rgb, d, k, 10**9)
    out = h.wait_stamp(10**9, timeout=90)
    _, inst, sem, segs = check_frame(out, rgb, d, k, 10**9, NAMES)
    assert len(segs) >= 3 and any(s.class_id for s in segs)  # SAM 2 instances, classes from OVSeg's vote
    assert node.wait_log("sam_decoder", 10)
    status = [ln for ln in node.log().splitlines() if "median ms" in ln][-1]
    assert "ovseg" in status and "sam3" not in status
