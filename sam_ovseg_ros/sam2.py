"""SAM 2.1 automatic masks: the Hiera image encoder and SAM 2's mask decoder behind our generator.

SAM 2 ("SAM 2: Segment Anything in Images and Videos", N. Ravi et al., 2024, github.com/facebookresearch/sam2)
through Hugging Face ``transformers`` (``Sam2Model``; the library SAM 3 already uses), loaded from a local
folder in the Hugging Face layout with ``local_files_only``. Prompting follows SAM 2's own image predictor:
the image is resized to the model's square input (not aspect-preserving, as SAM 2 does), grid points are
normalised by the image's width and height to that square, the decoder also reads the two high-resolution
feature levels, and low-resolution logits are resized bilinearly straight to the image. The generator
(grid, IoU and stability filters, NMS, small-region clean-up) is :class:`sam.MaskGenerator`, shared with SAM,
so the presets mean the same for both. SAM 2's low-resolution hole filling is not applied: it needs SAM 2's
CUDA connected-components extension, without which SAM 2 skips it too.

``profile: tiny`` writes a reduced SAM 2 of the real classes (Hiera with four stages, 256 px) with seeded
random weights into a folder and loads it through the same ``from_pretrained`` path as a real model. As
the SAM tiny model, each ConvTranspose of the mask decoder has one kernel for its 2x2 taps, so masks are
coherent regions rather than checkerboards; the mask hypernetworks' outputs are scaled by 2^18 (exact in
floating point: the same masks) so logits are of order one and stability scores mean something. Seed 0
(of 6 tried) yields 3-20 masks of >= 500 px with boxes under 80 % of the frame on the ScanNet frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .weights import WeightsError

# sam2.model_type -> Hugging Face repository of the SAM 2.1 checkpoint (Apache-2.0, not gated)
REPOS = {"hiera_tiny": "facebook/sam2.1-hiera-tiny", "hiera_small": "facebook/sam2.1-hiera-small",
         "hiera_base_plus": "facebook/sam2.1-hiera-base-plus", "hiera_large": "facebook/sam2.1-hiera-large"}
TINY_SEED = 0


def folder_name(model_type: str) -> str:
    """The default folder of a model type under the weights folder: the repository's name."""
    return REPOS[model_type].split("/")[1]


def source(model_type: str) -> str:
    repo = REPOS.get(model_type, REPOS["hiera_small"])
    return f"https://huggingface.co/{repo} (`hf download {repo} --local-dir <weights_dir>/{repo.split('/')[1]}`)"


def check_folder(folder: Path, model_type: str) -> None:
    """Raise WeightsError naming what a SAM 2 folder lacks and where it comes from."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise WeightsError(f"SAM 2.1 folder not found: {folder}. Get it from {source(model_type)}")
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / f).is_file() for f in ("processor_config.json", "preprocessor_config.json")):
        missing.append("processor_config.json (or preprocessor_config.json)")
    if not list(folder.glob("*.safetensors")):
        missing.append("model*.safetensors")
    if missing:
        raise WeightsError(f"SAM 2.1 folder {folder} lacks {', '.join(missing)}. Get it from {source(model_type)}")


def load(folder: Path, model_type: str, device: str = "cpu") -> "Sam2Prompter":
    """The model and its image processor from a folder in the Hugging Face layout (nothing downloaded)."""
    from transformers import Sam2Model
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.utils import logging

    logging.disable_progress_bar()  # no per-file progress bars in the node's log
    check_folder(folder, model_type)
    try:
        model = Sam2Model.from_pretrained(folder, local_files_only=True).to(device).eval()
        processor = Sam2ImageProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # missing files, bad JSON, a truncated or foreign safetensors file
        raise WeightsError(f"cannot load SAM 2.1 from {folder}: {exc}. Get it from {source(model_type)}") from None
    return Sam2Prompter(model, processor)


class Sam2Prompter:
    """SAM 2 behind :class:`sam.MaskGenerator`: image features once, then point prompts in pixels."""

    mask_threshold = 0.0

    def __init__(self, model, processor) -> None:
        self.model = model
        self.processor = processor
        self.size = int(model.config.prompt_encoder_config.image_size)  # the square input side
        self._features: list[torch.Tensor] | None = None
        self._hw = (0, 0)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def set_image(self, image: np.ndarray) -> None:
        pixels = self.processor(images=image, return_tensors="pt", device=self.device)["pixel_values"]
        self._features = self.model.get_image_embeddings(pixels.to(self.device, self.model.dtype))
        self._hw = image.shape[:2]

    def predict(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 2) pixel points -> (3N, h, w) low-resolution mask logits and (3N,) predicted IoU."""
        h, w = self._hw
        pts = torch.as_tensor(points, dtype=torch.float32, device=self.device)  # SAM 2's transform_coords:
        pts = pts / torch.tensor([w, h], dtype=torch.float32, device=self.device) * self.size  # x / w, y / h, squared
        labels = torch.ones(1, len(points), 1, dtype=torch.int, device=self.device)
        out = self.model(image_embeddings=self._features, input_points=pts[None, :, None, :], input_labels=labels,
                         multimask_output=True)
        return out.pred_masks[0].flatten(0, 1), out.iou_scores[0].flatten(0, 1)

    def upscale(self, low: torch.Tensor) -> torch.Tensor:
        """(N, h, w) logits -> (N, H, W) at the image size: one bilinear resize, as SAM 2's postprocess_masks."""
        return torch.nn.functional.interpolate(low[:, None].float(), self._hw, mode="bilinear",
                                               align_corners=False)[:, 0]


# ------------------------------------------------------------------ the tiny profile
def tiny_config():
    """A reduced SAM 2 of the real classes: Hiera 16-128 channels over four stages, 256 px input."""
    from transformers import Sam2Config

    return Sam2Config(
        vision_config=dict(
            backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1,
                                 image_size=[256, 256], blocks_per_stage=[1, 1, 2, 1],
                                 embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 2, 2],
                                 window_size_per_stage=[8, 4, 4, 2], global_attention_blocks=[3],
                                 window_positional_embedding_background_size=[7, 7]),
            backbone_channel_list=[128, 64, 32, 16], backbone_feature_sizes=[[64, 64], [32, 32], [16, 16]],
            fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32, image_size=256, patch_size=16),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=1, num_attention_heads=2,
                                 iou_head_hidden_dim=32))


def tiny_folder(folder: Path) -> Path:
    """The tiny SAM 2 with seeded random weights in the Hugging Face layout (created once)."""
    path = Path(folder) / f"sam2_tiny_seed{TINY_SEED}"
    if (path / "config.json").is_file():
        return path
    from transformers import Sam2Model, Sam2Processor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor

    torch.manual_seed(TINY_SEED)
    model = Sam2Model(tiny_config())
    with torch.no_grad():
        for m in (model.mask_decoder.upscale_conv1, model.mask_decoder.upscale_conv2):
            m.weight.copy_(m.weight.mean(dim=(2, 3), keepdim=True).expand_as(m.weight))
        for mlp in model.mask_decoder.output_hypernetworks_mlps:  # logits of ~1e-5 become ~1: exact (2^18)
            mlp.proj_out.weight.mul_(2.0 ** 18)
            mlp.proj_out.bias.mul_(2.0 ** 18)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": 256, "width": 256},
                                                     mask_size={"height": 64, "width": 64})).save_pretrained(tmp)
    tmp.replace(path)
    return path
