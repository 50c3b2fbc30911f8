"""The OVSeg network as one module whose state_dict keys are those of the released checkpoint."""
from __future__ import annotations

import torch
from torch import nn

from sam_ovseg_ros.ovseg.clip import build_clip
from sam_ovseg_ros.ovseg.config import CLIP_MEAN, CLIP_STD, OVSegConfig
from sam_ovseg_ros.ovseg.heads import SemSegHead
from sam_ovseg_ros.ovseg.swin import SwinBackbone


class ClipAdapter(nn.Module):
    """CLIP plus the learned non-object text embedding and CLIP's pixel statistics (x255)."""

    def __init__(self, cfg: OVSegConfig) -> None:
        super().__init__()
        self.clip_model = build_clip(cfg.clip)
        self.non_object_embedding = nn.Parameter(torch.zeros(1, cfg.clip.embed_dim))
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).reshape(1, 3, 1, 1) * 255.0)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).reshape(1, 3, 1, 1) * 255.0)


class OVSegModel(nn.Module):
    def __init__(self, cfg: OVSegConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = SwinBackbone(cfg.swin)
        self.sem_seg_head = SemSegHead(cfg.head, self.backbone.num_features)
        self.clip_adapter = ClipAdapter(cfg)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised, padded (B, 3, H, W) -> backbone features, class embeddings, mask logits (stride 4)."""
        feats = self.backbone(images)
        out = self.sem_seg_head(feats)
        out.update(feats)
        return out
