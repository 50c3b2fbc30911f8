"""Loading OVSeg weights strictly: every key of the checkpoint is used or knowingly dropped.

Accepts a detectron2 checkpoint (weights under ``"model"``), a Lightning-style ``"state_dict"``,
or a plain state_dict; strips ``module.`` prefixes; renames pre-v2 pixel-decoder keys
(``sem_seg_head.layer_1`` -> ``sem_seg_head.pixel_decoder.layer_1``) as OVSeg's head does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sam_ovseg_ros.core.weights import WeightsError, check_layout, describe

# Training-only entries that a released checkpoint may carry; read and dropped.
IGNORED_KEYS = ("criterion.empty_weight",)


@dataclass
class LoadReport:
    loaded: int
    ignored: list[str]
    renamed: int


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"OVSeg checkpoint not found: {path}. {describe(path.name)}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated download, HTML error page, wrong format
        raise WeightsError(f"cannot read OVSeg checkpoint {path}: {exc}. {describe(path.name)}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} is not an OVSeg checkpoint (no tensor state_dict inside). {describe(path.name)}")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def remap_legacy(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """Old-format heads lack the ``pixel_decoder.`` level; move those keys under it."""
    if any(k.startswith("sem_seg_head.pixel_decoder.") for k in sd):
        return sd, 0
    out, renamed = {}, 0
    for k, v in sd.items():
        if k.startswith("sem_seg_head.") and not k.startswith("sem_seg_head.predictor."):
            k = "sem_seg_head.pixel_decoder." + k[len("sem_seg_head."):]
            renamed += 1
        out[k] = v
    return out, renamed


def load_into(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint",
              assign: bool = False) -> LoadReport:
    """Strict load: missing, unexpected or mis-shaped keys raise WeightsError listing them."""
    sd, renamed = remap_legacy(sd)
    ignored = [k for k in sd if k in IGNORED_KEYS]
    sd = {k: v for k, v in sd.items() if k not in IGNORED_KEYS}
    check_layout(model.state_dict(), sd, f"{source} does not match the OVSeg model of this config")
    model.load_state_dict(sd, strict=True, assign=assign)
    for name, buf in model.named_buffers():
        if name.endswith("relative_position_index") and buf.device.type != "meta":
            from sam_ovseg_ros.ovseg.swin import relative_position_index

            if not torch.equal(buf, relative_position_index(int(round(buf.shape[0] ** 0.5)))):
                raise WeightsError(f"{source}: {name} is not the index of a square window; wrong file?")
    return LoadReport(loaded=len(sd), ignored=ignored, renamed=renamed)
