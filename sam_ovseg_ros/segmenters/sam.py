"""Segment Anything backend: model specs, strict checkpoint loading, and the prompter the shared
``generator.MaskGenerator`` drives (SAM's image embedding once, then point prompts).

``profile: tiny`` uses a SAM of the same classes with seeded random weights, saved to and loaded
from a state_dict file through the same loader as a real checkpoint. Random weights give every
ConvTranspose tap its own random kernel, which paints a 4x4 checkerboard over every mask; the
tiny model averages each ConvTranspose kernel over its 2x2 taps so masks become coherent regions.
Seed 21 (of 40 tried) yields 3-6 masks of >= 500 px with boxes under 80 % of the frame on
the ScanNet samples, on the rendered depth and on RGB.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from sam_ovseg_ros.core.weights import SAM_FILES, WeightsError, check_layout, describe, save_state_dict, verify


@dataclass(frozen=True)
class SamSpec:
    embed_dim: int
    depth: int
    num_heads: int
    global_attn: tuple[int, ...]
    image_size: int = 1024
    prompt_dim: int = 256
    window: int = 14
    dec_depth: int = 2
    dec_heads: int = 8
    dec_mlp: int = 2048
    iou_hidden: int = 256


SPECS = {
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11)),
    "tiny": SamSpec(32, 2, 2, (1,), image_size=256, prompt_dim=32, window=4, dec_depth=1, dec_heads=2, dec_mlp=64,
                    iou_hidden=32),
}
TINY_SEED = 21


def build(spec: SamSpec):
    """An untrained SAM of the official classes with these sizes."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = spec.image_size // 16
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=spec.depth, embed_dim=spec.embed_dim, img_size=spec.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=spec.num_heads, patch_size=16,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=spec.global_attn, window_size=spec.window,
            out_chans=spec.prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=spec.prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(spec.image_size, spec.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=spec.dec_depth, embedding_dim=spec.prompt_dim, mlp_dim=spec.dec_mlp,
                                          num_heads=spec.dec_heads),
            transformer_dim=spec.prompt_dim, iou_head_depth=3, iou_head_hidden_dim=spec.iou_hidden),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


def make_tiny_checkpoint(path: Path, seed: int = TINY_SEED) -> Path:
    """Write the tiny model's seeded random state_dict (see the module docstring)."""
    torch.manual_seed(seed)
    model = build(SPECS["tiny"])
    with torch.no_grad():
        for m in model.mask_decoder.output_upscaling:
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.copy_(m.weight.mean(dim=(2, 3), keepdim=True).expand_as(m.weight))
    return save_state_dict(model.state_dict(), path)


def tiny_checkpoint(folder: Path) -> Path:
    path = Path(folder) / f"sam_tiny_seed{TINY_SEED}.pth"
    return path if path.is_file() else make_tiny_checkpoint(path)


def load(model_type: str, checkpoint: str | Path, device="cpu"):
    """SAM with weights loaded strictly from ``checkpoint`` (a released file is md5-checked first)."""
    path = Path(checkpoint).expanduser()
    if model_type not in SPECS:
        raise WeightsError(f"unknown SAM model type '{model_type}' (known: {sorted(SPECS)})")
    if model_type != "tiny":
        if not path.is_file():
            raise WeightsError(f"SAM {model_type} checkpoint not found: {path}. {describe(SAM_FILES[model_type])}")
        verify(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise WeightsError(f"SAM checkpoint not found: {path}") from None
    except Exception as exc:
        raise WeightsError(f"cannot read SAM checkpoint {path}: {exc}. {describe(path.name)}") from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]
    with torch.device("meta"):
        model = build(SPECS[model_type])
    check_layout(model.state_dict(), sd, f"{path} is not a SAM {model_type} checkpoint")
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device).eval()


class SamPrompter:
    """segment-anything's model behind the generator: the image embedding once, then point prompts in
    pixels. Low-resolution logits come first so filters run before masks are upscaled to the image."""

    def __init__(self, model) -> None:
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(model)
        self.mask_threshold = float(model.mask_threshold)

    cleans_small_regions = True  # segment-anything's generator applies min_mask_region_area at full resolution

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 2) pixel points -> (3N, h, w) low-resolution mask logits and (3N,) predicted IoU
        (three masks per point, as ``SamPredictor.predict_torch(multimask_output=True)``)."""
        pred, model = self.predictor, self.predictor.model
        pts = torch.as_tensor(pred.transform.apply_coords(points, pred.original_size), device=pred.device)
        labels = torch.ones(pts.shape[0], 1, dtype=torch.int, device=pred.device)
        sparse, dense = model.prompt_encoder(points=(pts[:, None, :], labels), boxes=None, masks=None)
        low, iou = model.mask_decoder(image_embeddings=pred.features, image_pe=model.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=True)
        return low.flatten(0, 1), iou.flatten(0, 1)

    def upscale(self, low: torch.Tensor) -> torch.Tensor:
        """(N, h, w) low-resolution logits -> (N, H, W) logits at the image size (SAM's postprocess_masks)."""
        pred = self.predictor
        return pred.model.postprocess_masks(low[:, None], pred.input_size, pred.original_size)[:, 0]
