"""OVSeg inference: image -> per-class score map, and direct CLIP classification of given masks.

The steps and constants are the original's (github.com/facebookresearch/ov-seg: demo/predictor.py,
open_vocab_seg/ovseg_model.py): PIL-bilinear resize of the short side, pixel mean/std, zero pad to 32; masks upsampled bilinearly, cropped, sigmoid;
regions above the mask threshold cropped from the resized image, outside filled with the CLIP
mean, normalised, bicubic to 224, classified by the mask-prompted CLIP against prompt-ensembled
text features plus the learned non-object embedding (dropped before the softmax).

Two aggregations share everything up to the class probabilities P (regions x classes):
``original`` (SegmentAnyRGBD): S_k = sum over valid regions of P[q, k] * sigmoid(mask_q);
``ovseg_demo`` (OVSeg's demo): per class keep only its best region, binary masks, uncovered = blank.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sam_ovseg_ros.ovseg.clip import TextFeatures, encode_masked, patch_keep
from sam_ovseg_ros.ovseg.config import CLIP_MEAN, DEFAULT_MASK_THRESHOLD, PIXEL_MEAN, PIXEL_STD, OVSegConfig
from sam_ovseg_ros.ovseg.model import OVSegModel

TEMPERATURE = 100.0


def resized_size(h: int, w: int, short: int, max_side: int) -> tuple[int, int]:
    """detectron2 ResizeShortestEdge: short side -> ``short``, long side capped, each side int(x + 0.5)."""
    scale = short / min(h, w)
    nh, nw = (short, scale * w) if h < w else (scale * h, short)
    if max(nh, nw) > max_side:
        s = max_side / max(nh, nw)
        nh, nw = nh * s, nw * s
    return int(nh + 0.5), int(nw + 0.5)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(V, H, W) bool -> (V, 4) int64 tight boxes (x0, y0, x1 + 1, y1 + 1)."""
    xs, ys = masks.any(dim=1), masks.any(dim=2)
    w, h = masks.shape[2], masks.shape[1]
    x0 = xs.int().argmax(dim=1)
    x1 = w - xs.flip(1).int().argmax(dim=1)
    y0 = ys.int().argmax(dim=1)
    y1 = h - ys.flip(1).int().argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1)


def aggregate(probs: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor, aggregation: str,
              drop_others: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-class scores (K, H, W) at the resized size from region probabilities (V, K) and masks (V, H, W).

    ``original``: sum over regions of P[q, k] * soft mask q. ``ovseg_demo``: each class keeps its best
    region's probability on that region's binary mask (returns the chosen region per class too);
    ``drop_others`` leaves out the appended "others" class's choice, as the demo does for one name.
    """
    if aggregation == "original":
        return torch.einsum("qk,qhw->khw", probs, soft), None
    select = probs.argmax(dim=0) if probs.shape[0] else probs.new_zeros(0, dtype=torch.long)
    if drop_others:
        select = select[:-1]
    chosen = torch.zeros_like(probs)
    chosen[select] = probs[select]
    return torch.einsum("qk,qhw->khw", chosen, hard.float()), select


def postprocess(sem: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Scores at the resized size -> the input image's (h, w), bilinear as the original's."""
    return F.interpolate(sem[None], size=size, mode="bilinear", align_corners=False)[0]


@dataclass
class OVSegOutput:
    sem_seg: torch.Tensor  # (K, H, W) float at the input size
    class_names: list[str]  # the K names (with "others" appended when one name was given)
    blank: torch.Tensor  # (H, W) bool: no region covers the pixel (all scores 0)
    extras: dict = field(default_factory=dict)

    @property
    def labels(self) -> torch.Tensor:
        return self.sem_seg.argmax(dim=0)


class OVSegPredictor:
    def __init__(self, model: OVSegModel, cfg: OVSegConfig | None = None, device: str | torch.device = "cpu",
                 amp_dtype: torch.dtype | None = None) -> None:
        self.cfg = cfg or model.cfg
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.amp_dtype = amp_dtype
        self.text = TextFeatures(self.model.clip_adapter.clip_model)
        self._mean = torch.tensor(PIXEL_MEAN, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(PIXEL_STD, device=self.device).view(3, 1, 1)
        # fill as the original builds it: float64 255*mean, stored into a float32 tensor
        self._fill = torch.tensor([255.0 * c for c in CLIP_MEAN], dtype=torch.float32, device=self.device).view(3, 1, 1)

    def _amp(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ text
    @staticmethod
    def with_others(class_names: list[str]) -> list[str]:
        """One name alone gets "others" appended (classification is contrastive), without mutating the input."""
        names = list(class_names)
        return names + ["others"] if len(names) == 1 else names

    def text_features(self, names: list[str]) -> torch.Tensor:
        """(K + 1, E): the names' features and the normalised non-object embedding last."""
        non_obj = self.model.clip_adapter.non_object_embedding.float()
        return torch.cat([self.text(names), non_obj / non_obj.norm(dim=-1, keepdim=True)])

    # ------------------------------------------------------------------ image side
    def resize(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        nh, nw = resized_size(h, w, self.cfg.inference.short_side, self.cfg.inference.max_side)
        if (nh, nw) == (h, w):
            return np.ascontiguousarray(rgb)
        return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((nw, nh), Image.BILINEAR))

    def propose(self, rgb: np.ndarray, keep: bool = False) -> dict:
        """Run Swin + heads on one image; mask logits at the resized (unpadded) size."""
        resized = self.resize(rgb)
        image = torch.from_numpy(np.array(resized)).to(self.device).permute(2, 0, 1).float()
        hr, wr = image.shape[1:]
        div = self.cfg.inference.size_divisibility
        hp, wp = -(-hr // div) * div, -(-wr // div) * div
        x = F.pad((image - self._mean) / self._std, (0, wp - wr, 0, hp - hr))
        with self._amp():
            out = self.model(x[None])
        logits = F.interpolate(out["mask_logits"].float(), size=(hp, wp), mode="bilinear", align_corners=False)
        prop = {"image": image, "mask_logits": logits[0, :, :hr, :wr], "class_embed": out["class_embed"][0].float()}
        if keep:
            prop.update({k: out[k][0].float() for k in ("res2", "res3", "res4", "res5", "mask_features")})
            prop["hs"] = out["hs"][:, 0].float()
            prop["mask_logits_lowres"] = out["mask_logits"][0].float()
            prop["resized"] = resized
        return prop

    def crop_regions(self, image: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked crops for CLIP: (V, 3, S, S) normalised, (V, 1, S, S) masks, (V, 4) boxes."""
        size = self.cfg.clip.image_resolution
        clip_mean = self.model.clip_adapter.pixel_mean[0].float()
        clip_std = self.model.clip_adapter.pixel_std[0].float()
        boxes = mask_boxes(masks)
        h, w = image.shape[1:]
        crops, rmasks = [], []
        for (l, t, r, b), m in zip(boxes.tolist(), masks):
            l, t, r, b = max(l, 0), max(t, 0), min(r, w), min(b, h)
            mm = m[t:b, l:r].to(image.dtype)[None]
            region = image[:, t:b, l:r] * mm + (1 - mm) * self._fill
            region = (region - clip_mean) / clip_std
            crops.append(F.interpolate(region[None], size=(size, size), mode="bicubic"))
            rmasks.append(F.interpolate(mm[None], size=(size, size), mode="nearest"))
        if not crops:
            empty = image.new_zeros((0, 3, size, size))
            return empty, image.new_zeros((0, 1, size, size)), boxes
        return torch.cat(crops), torch.cat(rmasks), boxes

    def clip_features(self, crops: torch.Tensor, rmasks: torch.Tensor) -> torch.Tensor:
        """(V, E) unit float32 mask-prompted CLIP features of crops, in batches of ``clip_batch``."""
        clip = self.model.clip_adapter.clip_model
        feats = []
        bs = self.cfg.inference.clip_batch
        for i in range(0, crops.shape[0], bs):
            with self._amp():
                feats.append(encode_masked(clip, crops[i:i + bs], rmasks[i:i + bs]).float())
        return torch.cat(feats) if feats else crops.new_zeros((0, clip.text_projection.shape[1]))

    def clip_logits(self, crops: torch.Tensor, rmasks: torch.Tensor, text: torch.Tensor,
                    keep: dict | None = None) -> torch.Tensor:
        """(V, K + 1) = 100 * cos(masked-CLIP feature, text feature), in batches of ``clip_batch``."""
        f = self.clip_features(crops, rmasks)
        if keep is not None:
            keep["clip_image_features"] = f
        return TEMPERATURE * f @ text.T

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def infer(self, rgb: np.ndarray, class_names: list[str], aggregation: str | None = None,
              mask_threshold: float | None = None, keep: bool = False) -> OVSegOutput:
        """Per-class scores (K, H, W) at the input size for an RGB uint8 image."""
        inf = self.cfg.inference
        aggregation = aggregation or inf.aggregation
        if aggregation not in ("original", "ovseg_demo"):
            raise ValueError(f"unknown aggregation '{aggregation}'")
        if mask_threshold is not None:
            thr = mask_threshold
        else:
            thr = inf.mask_threshold if inf.mask_threshold is not None else DEFAULT_MASK_THRESHOLD[aggregation]
        names = self.with_others(class_names)
        prop = self.propose(rgb, keep)
        text = self.text_features(names)
        mask_cls_logits = TEMPERATURE * F.normalize(prop["class_embed"], dim=-1) @ text.T
        mask_cls = mask_cls_logits.softmax(-1)[:, :-1]
        mask_prob = prop["mask_logits"].sigmoid()
        binary = mask_prob > thr
        valid = binary.flatten(1).any(1)
        extras: dict = {}
        crops, rmasks, boxes = self.crop_regions(prop["image"], binary[valid])
        clip_logits = self.clip_logits(crops, rmasks, text, extras if keep else None)
        p_clip = clip_logits[:, :-1].softmax(-1)
        w = inf.ensemble_weight
        if w > 0:
            mapped = torch.ones_like(mask_cls)
            mapped[valid] = p_clip
            probs, soft, hard = mask_cls ** (1 - w) * mapped ** w, mask_prob, binary
        else:
            probs, soft, hard = p_clip, mask_prob[valid], binary[valid]
        drop_others = len(names) == 2 and names[-1] == "others" and len(class_names) == 1
        sem, select = aggregate(probs, soft, hard, aggregation, drop_others)
        sem_seg = postprocess(sem, rgb.shape[:2])
        if keep:
            extras.update({k: v for k, v in prop.items() if k not in ("image",)})
            extras.update(text_features=text, text_tokens=self.text.tokens(names), mask_cls_logits=mask_cls_logits,
                          mask_cls_probs=mask_cls, mask_pred_logits=prop["mask_logits"], mask_pred_bin=binary,
                          valid_flag=valid, region_boxes=boxes, clip_input_regions=crops, clip_region_masks=rmasks,
                          clip_patch_keep=patch_keep(rmasks, self.cfg.clip.vision_patch_size)[..., 0] > 0,
                          clip_logits=clip_logits, clip_cls_probs=p_clip, select_region_per_class=select,
                          semseg_before_postprocess=sem)
        return OVSegOutput(sem_seg=sem_seg, class_names=names, blank=~(sem_seg > 0).any(0), extras=extras)

    @torch.inference_mode()
    def mask_embeddings(self, rgb: np.ndarray, masks: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, E) unit mask-prompted CLIP embeddings of N masked crops (bool masks, the image's size) of the
        input image: what ``classify_masks`` compares with the text, and what a map object accumulates."""
        masks = torch.as_tensor(masks, device=self.device).bool()
        if masks.shape[0] == 0:
            return torch.zeros((0, self.model.clip_adapter.clip_model.text_projection.shape[1]), device=self.device)
        image = torch.from_numpy(np.array(rgb)).to(self.device).permute(2, 0, 1).float()
        crops, rmasks, _ = self.crop_regions(image, masks)
        return self.clip_features(crops, rmasks)

    @torch.inference_mode()
    def classify_embeddings(self, feats: torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """(N, K) class probabilities of unit crop embeddings (K includes "others" for a single name)."""
        if feats.shape[0] == 0:
            return torch.zeros((0, len(self.with_others(class_names))), device=self.device)
        logits = TEMPERATURE * feats @ self.text_features(self.with_others(class_names)).T
        return logits[:, :-1].softmax(-1)

    def classify_masks(self, rgb: np.ndarray, masks: np.ndarray | torch.Tensor, class_names: list[str]) -> torch.Tensor:
        """(N, K) class probabilities of N masks (bool, the image's size), by the mask-prompted CLIP alone.

        This is OVSeg's proposal classification with SAM masks as the proposals, cropped from the
        input image itself. K includes "others" when a single name is given.
        """
        return self.classify_embeddings(self.mask_embeddings(rgb, masks), class_names)
