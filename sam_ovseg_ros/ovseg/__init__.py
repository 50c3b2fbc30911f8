"""OVSeg (open-vocabulary segmentation with mask-adapted CLIP) in plain PyTorch, no detectron2.

    cfg = OVSegConfig.full()
    predictor = build_predictor(cfg, "ovseg_swinbase_vitL14_ft_mpt.pth", device="cuda")
    out = predictor.infer(rgb, ["chair", "table"], aggregation="original")

Imports ``core`` only (checkpoint files, config).
"""
from __future__ import annotations

from pathlib import Path

import torch

from sam_ovseg_ros.ovseg.checkpoint import LoadReport, load_into, read_state_dict
from sam_ovseg_ros.ovseg.config import OVSegConfig
from sam_ovseg_ros.ovseg.model import OVSegModel
from sam_ovseg_ros.ovseg.predictor import OVSegOutput, OVSegPredictor


def build_model(cfg: OVSegConfig, weights: str | Path | None, device="cpu") -> tuple[OVSegModel, LoadReport | None]:
    """The network with weights loaded strictly from ``weights`` (None: untrained init, for tests)."""
    if weights is None:
        return OVSegModel(cfg).to(device).eval(), None
    sd = read_state_dict(weights)
    with torch.device("meta"):
        model = OVSegModel(cfg)
    report = load_into(model, sd, source=str(weights), assign=True)
    _rebuild_unsaved_buffers(model)
    return model.to(device).eval(), report


def _rebuild_unsaved_buffers(model: OVSegModel) -> None:
    """Non-persistent buffers are not in a checkpoint, so they stay on meta after assign-loading."""
    clip = model.clip_adapter.clip_model
    if getattr(clip, "attn_mask", None) is not None and clip.attn_mask.is_meta:
        n = clip.attn_mask.shape[0]
        clip.register_buffer("attn_mask", torch.full((n, n), float("-inf")).triu_(1), persistent=False)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"tensors left uninitialised after loading: {left[:5]}")


def build_predictor(cfg: OVSegConfig, weights, device="cpu", amp_dtype=None) -> OVSegPredictor:
    model, _ = build_model(cfg, weights, device)
    return OVSegPredictor(model, cfg, device, amp_dtype)


__all__ = ["OVSegConfig", "OVSegModel", "OVSegPredictor", "OVSegOutput", "build_model", "build_predictor",
           "load_into", "read_state_dict"]
