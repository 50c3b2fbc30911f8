"""SAM backend: our generator equals segment-anything's, the loader is strict, the tiny model is useful."""
import numpy as np
import pytest
import torch
from scannet import segmenter_inputs
from segment_anything import SamAutomaticMaskGenerator

from sam_ovseg_ros.core.weights import WeightsError
from sam_ovseg_ros.segmenters import generator, sam

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = sam.tiny_checkpoint(tmp_path_factory.mktemp("w"))
    return path, sam.load("tiny", path)


@pytest.fixture(scope="module")
def images():
    return segmenter_inputs()


def canonical(masks, areas, boxes):
    return sorted((int(a), tuple(int(v) for v in b), m.tobytes()) for m, a, b in zip(masks, areas, boxes))


@pytest.mark.parametrize("params", [
    generator.PRESETS["tiny"],
    generator.GenParams(points_per_side=6, points_per_batch=10, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  box_nms_thresh=0.5, min_mask_region_area=0),
    generator.GenParams(points_per_side=10, points_per_batch=37, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                  box_nms_thresh=0.9, min_mask_region_area=300),
], ids=["tiny", "no-cleanup", "odd-batches"])
def test_generator_equals_segment_anything(tiny, images, params):
    """Same masks, areas and boxes as SamAutomaticMaskGenerator (crop_n_layers=0), mask for mask."""
    _, model = tiny
    official = SamAutomaticMaskGenerator(
        model, points_per_side=params.points_per_side, points_per_batch=params.points_per_batch,
        pred_iou_thresh=params.pred_iou_thresh, stability_score_thresh=params.stability_score_thresh,
        box_nms_thresh=params.box_nms_thresh, min_mask_region_area=params.min_mask_region_area)
    ours = generator.MaskGenerator(model)
    compared = 0
    for img in images.values():
        ref = [r for r in official.generate(img) if r["area"] > 0]
        got = ours.generate(img, params)
        ref_boxes = [(x, y, x + w, y + h) for x, y, w, h in (r["bbox"] for r in ref)]
        assert canonical(got.masks, got.areas, got.boxes) == canonical(
            [r["segmentation"] for r in ref], [r["area"] for r in ref], ref_boxes)
        np.testing.assert_allclose(sorted(got.scores), sorted(r["predicted_iou"] for r in ref), rtol=0, atol=1e-6)
        compared += len(ref)
    assert compared >= 8  # the comparison is not vacuous


def test_tiny_model_gives_several_partial_masks_on_real_frames(tiny, images):
    _, model = tiny
    gen = generator.MaskGenerator(model)
    for name, img in images.items():
        out = gen.generate(img, generator.PRESETS["tiny"])
        partial = [a for a, b in zip(out.areas, out.boxes)
                   if a >= 500 and (b[2] - b[0]) * (b[3] - b[1]) < 0.8 * img.shape[0] * img.shape[1]]
        assert len(out.masks) >= 2 and len(partial) >= 2, name
        assert (out.areas < img.shape[0] * img.shape[1]).sum() >= 2


def test_tiny_checkpoint_roundtrips_through_the_loader(tiny):
    path, model = tiny
    sd = torch.load(path, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_loader_rejects_missing_corrupt_and_mismatched(tiny, tmp_path):
    path, _ = tiny
    with pytest.raises(WeightsError, match=r"not found: .*sam_vit_h_4b8939.pth.*dl.fbaipublicfiles.com"):
        sam.load("vit_h", tmp_path / "sam_vit_h_4b8939.pth")
    bad = tmp_path / "sam_vit_b_01ec64.pth"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="md5 .* expected 01ec64d29a2fca3f0661936605ae66f8"):
        sam.load("vit_b", bad)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="cannot read SAM checkpoint"):
        sam.load("tiny", corrupt)
    other = tmp_path / "other.pth"
    sd = torch.load(path, weights_only=True)
    sd["image_encoder.neck.0.weight"] = torch.zeros(1)
    del sd["mask_decoder.iou_token.weight"]
    torch.save(sd, other)
    with pytest.raises(WeightsError, match="not a SAM tiny checkpoint: 1 missing .*iou_token.*1 wrong shape"):
        sam.load("tiny", other)
    with pytest.raises(WeightsError, match="unknown SAM model type"):
        sam.load("vit_x", path)


def test_presets_and_overrides():
    from sam_ovseg_ros.core.config import SamConfig

    orig = generator.params_for(SamConfig(preset="original"), "default")
    assert (orig.points_per_side, orig.points_per_batch, orig.pred_iou_thresh, orig.stability_score_thresh,
            orig.box_nms_thresh, orig.min_mask_region_area) == (64, 64, 0.5, 0.8, 0.7, 100)
    p = generator.params_for(SamConfig(preset="fast", points_per_side=20, stability_score_thresh=0.9,
                                 min_mask_region_area=0), "default")
    assert (p.points_per_side, p.stability_score_thresh, p.min_mask_region_area, p.pred_iou_thresh) == (20, 0.9, 0, 0.5)
    assert generator.params_for(SamConfig(preset="original"), "tiny").points_per_side == 8


def test_bit_packing_roundtrip():
    b = torch.rand(5, 7, 13) > 0.5
    assert torch.equal(generator.unpack_bits(generator.pack_bits(b), (7, 13)), b)
    assert generator.pack_bits(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 2)
