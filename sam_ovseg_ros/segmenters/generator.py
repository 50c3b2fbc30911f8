"""Automatic mask generation shared by SAM and SAM 2: a point grid of prompts, filters, NMS.

``MaskGenerator`` gives the same masks as segment-anything's ``SamAutomaticMaskGenerator`` with
``crop_n_layers=0`` (SegmentAnyRGBD's setting; test_sam.py checks mask for mask), but keeps candidate
masks on the model's device as bit-packed tensors instead of RLE lists, whose deep copies are
most of the official generator's run time; masks emptied by small-region clean-up are dropped.
The model comes in as a prompter (``set_image``, ``predict`` points, ``upscale`` logits): SAM's is
``sam.SamPrompter``, SAM 2's ``sam2.Sam2Prompter``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torchvision.ops.boxes import batched_nms


# ---------------------------------------------------------------------------- generator settings
@dataclass(frozen=True)
class GenParams:
    points_per_side: int
    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 100
    stability_score_offset: float = 1.0


PRESETS = {
    # exactly SegmentAnyRGBD's ScanNet settings (open_vocab_seg/utils/predictor.py, run_on_pcd)
    "original": GenParams(points_per_side=64, points_per_batch=64, pred_iou_thresh=0.5, stability_score_thresh=0.8),
    # SAM's own default grid (4x fewer prompts than the original), larger prompt batches; same filters
    "fast": GenParams(points_per_side=32, points_per_batch=256, pred_iou_thresh=0.5, stability_score_thresh=0.8),
    # random weights predict meaningless IoU/stability: keep every candidate, small grid
    "tiny": GenParams(points_per_side=8, points_per_batch=64, pred_iou_thresh=0.0, stability_score_thresh=0.0),
}


def params_for(sam_cfg, profile: str) -> GenParams:
    """The preset (``tiny`` for the tiny profile), with every knob set in the config overriding it."""
    p = PRESETS["tiny" if profile == "tiny" else sam_cfg.preset]
    over = {}
    for name in ("points_per_side", "points_per_batch", "min_mask_region_area"):
        v = getattr(sam_cfg, name)
        if v > 0 or (name == "min_mask_region_area" and v == 0):
            over[name] = v
    for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
        v = getattr(sam_cfg, name)
        if v >= 0:
            over[name] = v
    return replace(p, **over)


# ---------------------------------------------------------------------------- the generator
@dataclass
class SamMasks:
    masks: np.ndarray | torch.Tensor  # (M, H, W) bool; a device tensor when no host clean-up is needed
    areas: np.ndarray  # (M,) int64
    scores: np.ndarray  # (M,) float32 predicted IoU
    stability: np.ndarray  # (M,) float32
    boxes: np.ndarray  # (M, 4) int64 x0, y0, x1, y1 (inclusive, as segment-anything)
    timings: dict
    classes: np.ndarray | None = None  # (M,) vocabulary index per mask, from text-prompted segmenters


Segmentation = SamMasks  # what every segmenter returns


_SHIFTS = {}


def _shifts(device) -> torch.Tensor:
    if device not in _SHIFTS:
        _SHIFTS[device] = torch.arange(7, -1, -1, device=device, dtype=torch.uint8)
    return _SHIFTS[device]


def pack_bits(b: torch.Tensor) -> torch.Tensor:
    """(N, ...) bool -> (N, ceil(P/8)) uint8, 8x smaller for keeping candidates until NMS."""
    flat = b.reshape(b.shape[0], int(np.prod(b.shape[1:])))
    pad = (-flat.shape[1]) % 8
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    grouped = flat.view(flat.shape[0], flat.shape[1] // 8, 8).to(torch.uint8)
    return (grouped << _shifts(b.device)).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    bits = (packed[..., None] >> _shifts(packed.device)) & 1
    return bits.view(packed.shape[0], packed.shape[1] * 8)[:, : shape[0] * shape[1]].view(-1, *shape).bool()


class MaskGenerator:
    """Automatic mask generation on one full-image crop (see module docstring); the model comes in as a
    prompter (``set_image``, ``predict`` points, ``upscale`` logits), so SAM and SAM 2 share it."""

    def __init__(self, model_or_prompter, amp_dtype: torch.dtype | None = None) -> None:
        if not hasattr(model_or_prompter, "predict"):  # a segment-anything model
            from sam_ovseg_ros.segmenters.sam import SamPrompter

            model_or_prompter = SamPrompter(model_or_prompter)
        self.prompter = model_or_prompter
        self.amp_dtype = amp_dtype

    @torch.inference_mode()
    def generate(self, image: np.ndarray, p: GenParams) -> SamMasks:
        from segment_anything.utils.amg import (
            batch_iterator,
            batched_mask_to_box,
            build_point_grid,
            calculate_stability_score,
        )

        t = {}
        t0 = time.perf_counter()
        pr = self.prompter
        dev = pr.device
        h, w = image.shape[:2]
        with self._amp():
            pr.set_image(image)
        t["sam_encoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        thr = pr.mask_threshold
        points = build_point_grid(p.points_per_side) * np.array([[w, h]])
        keep_bits, keep_iou, keep_stab, keep_box = [], [], [], []
        for (batch,) in batch_iterator(p.points_per_batch, points):
            with self._amp():
                low, iou = pr.predict(batch)
            low, iou = low.float(), iou.float()
            if p.pred_iou_thresh > 0.0:  # before upscaling: the filter needs only the scores
                sel = iou > p.pred_iou_thresh
                low, iou = low[sel], iou[sel]
            logits = pr.upscale(low)
            stab = calculate_stability_score(logits, thr, p.stability_score_offset)
            if p.stability_score_thresh > 0.0:
                sel = stab >= p.stability_score_thresh
                logits, iou, stab = logits[sel], iou[sel], stab[sel]
            binary = logits > thr
            keep_box.append(batched_mask_to_box(binary))
            keep_bits.append(pack_bits(binary))
            keep_iou.append(iou)
            keep_stab.append(stab)
            del logits, binary, low
        bits, iou = torch.cat(keep_bits), torch.cat(keep_iou)
        stab, boxes = torch.cat(keep_stab), torch.cat(keep_box)
        keep = batched_nms(boxes.float(), iou, torch.zeros_like(iou), iou_threshold=p.box_nms_thresh)
        masks = unpack_bits(bits[keep], (h, w))
        iou, stab, boxes = iou[keep].cpu().numpy(), stab[keep].cpu().numpy(), boxes[keep].cpu().numpy()
        t["sam_decoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        clean = p.min_mask_region_area > 0 and pr.cleans_small_regions
        if clean or dev.type == "cpu":
            # segment-anything's clean-up is OpenCV on the host; on the CPU numpy's box-cropped paths
            # are also the fastest. Otherwise the stack stays on the device for instances and fusion.
            masks = masks.cpu().numpy()
            if clean and len(masks):
                masks, iou, stab, boxes = self._clean_small_regions(masks, iou, stab, boxes, p)
            areas = masks.sum(axis=(1, 2), dtype=np.int64)
        else:
            areas = masks.sum(dim=(1, 2), dtype=torch.int64).cpu().numpy()
        nonempty = areas > 0
        t["sam_postprocess"] = time.perf_counter() - t0
        return SamMasks(masks[nonempty], areas[nonempty], iou[nonempty].astype(np.float32),
                        stab[nonempty].astype(np.float32), boxes[nonempty], t)

    @staticmethod
    def _clean_small_regions(masks, iou, stab, boxes, p: GenParams):
        """segment-anything's post-processing: fill small holes, drop small islands, NMS again
        preferring masks the clean-up left unchanged (threshold max(box_nms, crop_nms=0.7))."""
        from segment_anything.utils.amg import batched_mask_to_box, remove_small_regions

        new, unchanged = np.empty_like(masks), np.zeros(len(masks), np.float32)
        for i, m in enumerate(masks):
            m2, c1 = remove_small_regions(m, p.min_mask_region_area, mode="holes")
            m2, c2 = remove_small_regions(m2, p.min_mask_region_area, mode="islands")
            new[i], unchanged[i] = m2, float(not (c1 or c2))
        nboxes = batched_mask_to_box(torch.from_numpy(new))
        keep = batched_nms(nboxes.float(), torch.from_numpy(unchanged), torch.zeros(len(new)),
                           iou_threshold=max(p.box_nms_thresh, 0.7)).numpy()
        return new[keep], iou[keep], stab[keep], nboxes.numpy()[keep]  # unchanged masks keep their box

    def _amp(self):
        from contextlib import nullcontext

        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.prompter.device.type, dtype=self.amp_dtype)
