"""Sizes and inference knobs of OVSeg; one code path for the full model and the tiny golden one.

``OVSegConfig.full()`` is the released Swin-B + CLIP ViT-L/14 demo model
(configs/ovseg_swinB_vitL_demo.yaml); ``from_file`` reads our own JSON/YAML layout or the
``tiny_config.json`` that describes the golden reference model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

PIXEL_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 (detectron2 ImageNet)
PIXEL_STD = (58.395, 57.12, 57.375)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# ViLD prompt templates (OVSeg TEXT_TEMPLATES: "vild"), averaged per class name.
VILD_TEMPLATES = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)

# mask threshold each aggregation uses unless set (SAD's demo yaml 0.1; OVSeg's demo yaml 0.35)
DEFAULT_MASK_THRESHOLD = {"original": 0.1, "ovseg_demo": 0.35}


@dataclass
class SwinConfig:
    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 12
    patch_size: int = 4
    mlp_ratio: float = 4.0


@dataclass
class HeadConfig:
    conv_dim: int = 256  # pixel decoder (FPN) width, GroupNorm(32)
    mask_dim: int = 256
    hidden_dim: int = 256  # transformer decoder width
    num_queries: int = 100
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 6
    embedding_dim: int = 768  # query class embedding, = CLIP embed dim
    embed_hidden_dim: int = 1024
    embed_layers: int = 2
    num_classes: int = 171  # training set; only sizes criterion.empty_weight


@dataclass
class ClipConfig:
    embed_dim: int = 768
    image_resolution: int = 224
    vision_layers: int = 24
    vision_width: int = 1024
    vision_patch_size: int = 14
    context_length: int = 77
    vocab_size: int = 49408
    transformer_width: int = 768
    transformer_heads: int = 12
    transformer_layers: int = 12
    mask_prompt_depth: int = 3

    @property
    def grid(self) -> int:
        return self.image_resolution // self.vision_patch_size


@dataclass
class InferenceConfig:
    short_side: int = 640
    max_side: int = 2560
    size_divisibility: int = 32
    aggregation: str = "original"  # original | ovseg_demo
    mask_threshold: float | None = None  # None: DEFAULT_MASK_THRESHOLD[aggregation]
    ensemble_weight: float = 0.0  # 0: classes from CLIP only (demo config)
    clip_batch: int = 32


@dataclass
class OVSegConfig:
    swin: SwinConfig = field(default_factory=SwinConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    @classmethod
    def full(cls) -> "OVSegConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "OVSegConfig":
        """The golden reference's sizes (test/data/ovseg_tiny/tiny_config.json), short side 320."""
        return cls(
            swin=SwinConfig(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
            head=HeadConfig(conv_dim=64, mask_dim=32, hidden_dim=64, num_queries=10, nheads=4, dim_feedforward=128,
                            dec_layers=2, embedding_dim=48, embed_hidden_dim=96),
            clip=ClipConfig(embed_dim=48, vision_layers=3, vision_width=128, vision_patch_size=32,
                            transformer_width=64, transformer_heads=1, transformer_layers=2),
            inference=InferenceConfig(short_side=320, aggregation="ovseg_demo"),
        )

    @classmethod
    def from_dict(cls, d: dict) -> "OVSegConfig":
        if "backbone_swin" in d:
            return cls._from_reference_json(d)
        cfg = cls()
        for section in ("swin", "head", "clip", "inference"):
            sub = getattr(cfg, section)
            for k, v in (d.get(section) or {}).items():
                if not hasattr(sub, k):
                    raise ValueError(f"unknown OVSeg config key {section}.{k}")
                setattr(sub, k, tuple(v) if isinstance(v, list) else v)
        return cfg

    @classmethod
    def _from_reference_json(cls, d: dict) -> "OVSegConfig":
        """The knobs of test/data/ovseg_tiny/tiny_config.json (detectron2 names, as the golden run used them)."""
        sw, pd, tp, cl, ad = d["backbone_swin"], d["pixel_decoder"], d["transformer_predictor"], d["clip"], d["clip_adapter"]
        return cls(
            swin=SwinConfig(embed_dim=sw["embed_dim"], depths=tuple(sw["depths"]), num_heads=tuple(sw["num_heads"]),
                            window_size=sw["window_size"], patch_size=sw["patch_size"], mlp_ratio=sw["mlp_ratio"]),
            head=HeadConfig(conv_dim=pd["conv_dim"], mask_dim=pd["mask_dim"], hidden_dim=tp["hidden_dim"],
                            num_queries=tp["num_queries"], nheads=tp["nheads"], dim_feedforward=tp["dim_feedforward"],
                            dec_layers=tp["dec_layers"], embedding_dim=tp["embedding_dim"],
                            embed_hidden_dim=tp["embed_hidden_dim"], embed_layers=tp["embed_layers"],
                            num_classes=tp["num_classes_train"]),
            clip=ClipConfig(embed_dim=cl["embed_dim"], image_resolution=cl["image_resolution"],
                            vision_layers=cl["vision_layers"], vision_width=cl["vision_width"],
                            vision_patch_size=cl["vision_patch_size"], context_length=cl["context_length"],
                            vocab_size=cl["vocab_size"], transformer_width=cl["transformer_width"],
                            transformer_heads=cl["transformer_heads"], transformer_layers=cl["transformer_layers"],
                            mask_prompt_depth=ad["mask_prompt_depth"]),
            inference=InferenceConfig(short_side=d["input"]["resize"]["short_edge"],
                                      max_side=d["input"]["resize"]["max_size"],
                                      size_divisibility=d["input"]["size_divisibility"], aggregation="ovseg_demo",
                                      mask_threshold=ad["mask_thr"], ensemble_weight=ad["clip_ensemble_weight"]),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "OVSegConfig":
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return cls.from_dict(yaml.safe_load(text))
        return cls.from_dict(json.loads(text))
