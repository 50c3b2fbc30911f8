"""Seeded random weights for the tiny OVSeg of the ``tiny`` profile (same sizes as the golden model).

Plain initialisation makes every query's mask ~0.5 everywhere and every region alike, so
nothing downstream would be exercised. The scales follow the golden reference's recipe
(the scheme of test/data/ovseg_tiny): norms 1+0.1N / 0.1N, biases 0.05N, mask prompts 0.5N, decoder and
CLIP-visual attention projections x3, the last mask-MLP layer x12, mask-feature bias N(0, 1).
"""
from __future__ import annotations

from pathlib import Path

import torch

from sam_ovseg_ros.core.weights import save_state_dict
from sam_ovseg_ros.ovseg.config import OVSegConfig
from sam_ovseg_ros.ovseg.model import OVSegModel

TINY_SEED = 100  # of 110 seeds tried, the one giving >= 2 classes (>1 % px) on every ScanNet sample


def make_tiny_checkpoint(path: Path, cfg: OVSegConfig | None = None, seed: int = TINY_SEED) -> Path:
    cfg = cfg or OVSegConfig.tiny()
    torch.manual_seed(0)
    model = OVSegModel(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(s in name for s in ("norm", "ln_", ".gn")) or name.endswith(("ln_final.weight", "ln_final.bias"))
            if is_norm and leaf == "weight" and p.dim() == 1:
                p.copy_(1 + 0.1 * n)
            elif is_norm and leaf == "bias":
                p.copy_(0.1 * n)
            elif name.endswith("mask_features.bias"):
                p.copy_(n)
            elif leaf.endswith("bias"):
                p.copy_(0.05 * n)
            elif name.endswith("mask_embedding"):
                p.copy_(0.5 * n)
            else:
                std = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.02
                p.copy_(n * std)
        pred = model.sem_seg_head.predictor
        for layer in pred.transformer.decoder.layers:
            layer.self_attn.in_proj_weight.mul_(3)
            layer.multihead_attn.in_proj_weight.mul_(3)
        for block in model.clip_adapter.clip_model.visual.transformer.resblocks:
            block.attn.in_proj_weight.mul_(3)
        pred.mask_embed.layers[-1].weight.mul_(12)
    return save_state_dict(model.state_dict(), path)


def tiny_checkpoint(folder: Path) -> Path:
    path = Path(folder) / f"ovseg_tiny_seed{TINY_SEED}.pth"
    return path if path.is_file() else make_tiny_checkpoint(path)
