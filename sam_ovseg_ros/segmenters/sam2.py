"""SAM 2.1 automatic masks: the Hiera image encoder and SAM 2's mask decoder behind our generator.

SAM 2 ("SAM 2: Segment Anything in Images and Videos", N. Ravi et al., 2024, github.com/facebookresearch/sam2)
runs on Hugging Face ``transformers``' ``Sam2Model`` (the library SAM 3 already uses). Checkpoints are SAM 2.1's
released ``.pt`` files, whose keys are renamed into that model's (the video-memory modules, unused on single
images, are dropped; every image key must be there, strictly), or a folder in the Hugging Face layout. The
image path is SAM 2's own image predictor's: the image as floats in [0, 1] resized to the square input with
antialiasing (not keeping its aspect), ImageNet-normalised; grid points scaled by width and height to that
square; the decoder also reads the two high-resolution feature levels; low-resolution logits are resized
straight to the image. The generator (grid, IoU and stability filters, NMS) is :class:`generator.MaskGenerator`,
shared with SAM, so the presets mean the same for both, but for the clean-up: SAM 2's generator never runs
segment-anything's full-resolution one and hands ``min_mask_region_area`` only to a low-resolution hole
filling that needs SAM 2's CUDA extension (skipped without it); neither runs here. test_sam2.py checks all
of this against outputs of the original code (test/data/sam2_tiny).

``profile: tiny`` writes a reduced SAM 2.1 (Hiera 16 channels, stages 1-1-2-1, 256 px; SAM heads at 32
channels with SAM 2's fixed depth 2, MLP 2048 and 8 heads; the architecture of the golden data's model) with
seeded random weights in the Hugging Face layout and loads it through the same loader. As the SAM tiny model, each ConvTranspose of the mask decoder has one
kernel for its 2x2 taps, so masks are regions rather than checkerboards; the hypernetworks' outputs are scaled
by 2^18 (exact: the same masks) so logits are of order one, and the high-resolution projections by 0.1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sam_ovseg_ros.core.weights import WeightsError, check_layout, describe

RELEASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
TINY_SEED = 2  # of 8 tried: 6-13 partial regions per ScanNet frame, depth and colour


@dataclass(frozen=True)
class Spec:
    """A SAM 2.1 image model: Hiera sizes (its sam2.1_hiera_*.yaml) and the SAM heads."""

    embed_dim: int
    heads: int
    stages: tuple[int, ...]
    global_blocks: tuple[int, ...]
    pos_bkg: tuple[int, int]
    windows: tuple[int, ...] = (8, 4, 14, 7)
    image_size: int = 1024
    hidden: int = 256  # FPN and SAM heads


SPECS = {
    "hiera_tiny": Spec(96, 1, (1, 2, 7, 2), (5, 7, 9), (7, 7)),
    "hiera_small": Spec(96, 1, (1, 2, 11, 2), (7, 10, 13), (7, 7)),
    "hiera_base_plus": Spec(112, 2, (2, 3, 16, 3), (12, 16, 20), (14, 14)),
    "hiera_large": Spec(144, 2, (2, 6, 36, 4), (23, 33, 43), (7, 7), (8, 4, 16, 8)),
    "tiny": Spec(16, 1, (1, 1, 2, 1), (3,), (7, 7), (8, 4, 4, 2), image_size=256, hidden=32),
}
FILES = {t: f"sam2.1_{t}.pt" for t in SPECS if t != "tiny"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # SAM 2's image normalisation


def config(spec: Spec):
    """transformers' Sam2Config of a spec (decoder sizes as SAM 2 fixes them: depth 2, MLP 2048, 8 heads)."""
    from transformers import Sam2Config

    c, h, grid = spec.embed_dim, spec.heads, spec.image_size // 4
    return Sam2Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam2_hiera_det_model", hidden_size=c, num_attention_heads=h,
                image_size=[spec.image_size] * 2, blocks_per_stage=list(spec.stages),
                embed_dim_per_stage=[c, 2 * c, 4 * c, 8 * c], num_attention_heads_per_stage=[h, 2 * h, 4 * h, 8 * h],
                window_size_per_stage=list(spec.windows), global_attention_blocks=list(spec.global_blocks),
                window_positional_embedding_background_size=list(spec.pos_bkg)),
            backbone_channel_list=[8 * c, 4 * c, 2 * c, c], fpn_hidden_size=spec.hidden,
            backbone_feature_sizes=[[grid, grid], [grid // 2, grid // 2], [grid // 4, grid // 4]]),
        prompt_encoder_config=dict(hidden_size=spec.hidden, image_size=spec.image_size, patch_size=16),
        mask_decoder_config=dict(hidden_size=spec.hidden, mlp_dim=2048, num_hidden_layers=2, num_attention_heads=8,
                                 iou_head_hidden_dim=256))


# ------------------------------------------------------------------ the released checkpoint layout
# released key pattern -> transformers key, first match wins; MLP layer numbers are renamed before (_mlp)
_RENAMES = [
    (r"image_encoder\.trunk\.patch_embed\.proj\.", "vision_encoder.backbone.patch_embed.projection."),
    (r"image_encoder\.trunk\.(pos_embed(?:_window)?)$", r"vision_encoder.backbone.\1"),
    (r"image_encoder\.trunk\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.backbone.blocks.\1.layer_norm\2."),
    (r"image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"no_mem_embed$", "no_memory_embedding"),
    (r"sam_prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
     "prompt_encoder.shared_embedding.positional_embedding"),
    (r"sam_prompt_encoder\.mask_downscaling\.([0-6])\.",
     lambda m: "prompt_encoder.mask_embed." + {"0": "conv1", "1": "layer_norm1", "3": "conv2", "4": "layer_norm2",
                                               "6": "conv3"}[m.group(1)] + "."),
    (r"sam_prompt_encoder\.", "prompt_encoder."),
    (r"sam_mask_decoder\.output_upscaling\.([013])\.",
     lambda m: "mask_decoder." + {"0": "upscale_conv1", "1": "upscale_layer_norm", "3": "upscale_conv2"}[m.group(1)]
     + "."),
    (r"sam_mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
    (r"sam_mask_decoder\.transformer\.layers\.(\d+)\.norm(\d)\.", r"mask_decoder.transformer.layers.\1.layer_norm\2."),
    (r"sam_mask_decoder\.(transformer\..*)\.out_proj\.", r"mask_decoder.\1.o_proj."),
    (r"sam_mask_decoder\.", "mask_decoder."),
]
# SAM 2 numbers an MLP's layers 0..n-1; transformers names them proj_in, layers.0..n-3, proj_out
_MLP = re.compile(r"(\.mlp|iou_prediction_head|output_hypernetworks_mlps\.\d+|pred_obj_score_head)\.layers\.(\d+)\.")
_IMAGE_KEYS = re.compile(r"(image_encoder|sam_prompt_encoder|sam_mask_decoder)\.|no_mem_embed$")


def _mlp(match: re.Match) -> str:
    depth, i = (2 if match.group(1) == ".mlp" else 3), int(match.group(2))
    return f"{match.group(1)}.{'proj_in' if i == 0 else 'proj_out' if i == depth - 1 else f'layers.{i - 1}'}."


def to_transformers(sd: dict) -> dict:
    """A released SAM 2.1 state_dict -> transformers' Sam2Model keys (image mode: the video memory's
    modules are dropped; the four point embeddings become one table; the prompt encoder's Gaussian
    matrix fills both of the model's copies)."""
    out = {}
    points = {}
    for key, value in sd.items():
        if not _IMAGE_KEYS.match(key):
            continue
        if key.startswith("sam_prompt_encoder.point_embeddings."):
            points[int(key.split(".")[2])] = value
            continue
        new = _MLP.sub(_mlp, key)
        for pattern, repl in _RENAMES:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        out[new] = value
    if points:
        out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in sorted(points)])
    if "prompt_encoder.shared_embedding.positional_embedding" in out:
        out["shared_image_embedding.positional_embedding"] = out["prompt_encoder.shared_embedding.positional_embedding"]
    return out


# ------------------------------------------------------------------ loading
def source(model_type: str) -> str:
    name = FILES.get(model_type, FILES["hiera_small"])
    repo = "facebook/sam2.1-" + model_type.replace("_", "-")
    return f"{RELEASE}{name} (SAM 2.1's release; Hugging Face: {repo})"


def load(path: Path, model_type: str, device: str = "cpu") -> "Sam2Prompter":
    """SAM 2.1 from a released ``.pt`` checkpoint (``model_type`` gives its sizes) or a folder in the Hugging
    Face layout (config.json + safetensors); nothing is downloaded. A missing, unreadable or foreign file
    raises WeightsError naming it and where the released one comes from."""
    from transformers import Sam2Model

    _quiet()
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() or not list(path.glob("*.safetensors")):
            raise WeightsError(f"SAM 2.1 folder {path} lacks config.json or model*.safetensors. "
                               f"Get {source(model_type)}")
        try:
            model = Sam2Model.from_pretrained(path, local_files_only=True)
        except Exception as exc:  # bad JSON, a truncated or foreign safetensors file
            raise WeightsError(f"cannot load SAM 2.1 from {path}: {exc}. Get {source(model_type)}") from None
        return Sam2Prompter(model.to(device).eval())
    if model_type not in SPECS:
        raise WeightsError(f"unknown SAM 2.1 model type '{model_type}' (known: {sorted(SPECS)})")
    if not path.is_file():
        raise WeightsError(f"SAM 2.1 checkpoint not found: {path}. Get {source(model_type)}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise WeightsError(f"cannot read SAM 2.1 checkpoint {path}: {exc}. {describe(path.name)}") from None
    sd = to_transformers(sd.get("model", sd) if isinstance(sd, dict) else {})
    with torch.device("meta"):
        model = Sam2Model(config(SPECS[model_type]))
    check_layout(model.state_dict(), sd, f"{path} is not a SAM 2.1 {model_type} checkpoint")
    model.load_state_dict(sd, strict=True, assign=True)
    return Sam2Prompter(model.to(device).eval())


class Sam2Prompter:
    """SAM 2 behind :class:`generator.MaskGenerator`: image features once, then point prompts in pixels."""

    mask_threshold = 0.0
    # SAM 2's generator passes min_mask_region_area only to its low-resolution hole filling (the CUDA
    # extension); its full-resolution clean-up is never called. So no clean-up here: masks stay on the device.
    cleans_small_regions = False

    def __init__(self, model) -> None:
        self.model = model
        self.size = int(model.config.prompt_encoder_config.image_size)  # the square input side
        self._features: list[torch.Tensor] | None = None
        self._hw = (0, 0)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def set_image(self, image: np.ndarray) -> None:
        """SAM 2's image transform: floats in [0, 1], an antialiased bilinear resize to the square input, then
        ImageNet normalisation (on the model's device)."""
        from torchvision.transforms import functional as tf

        x = torch.from_numpy(np.array(image, np.float32, copy=True)).to(self.device).permute(2, 0, 1) / 255.0
        x = tf.resize(x, [self.size, self.size], interpolation=tf.InterpolationMode.BILINEAR, antialias=True)
        x = tf.normalize(x, MEAN, STD)
        self._features = self.model.get_image_embeddings(x[None].to(self.model.dtype))
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
def tiny_folder(folder: Path) -> Path:
    """The tiny SAM 2.1 with seeded random weights in the Hugging Face layout (created once; see the module
    docstring)."""
    path = Path(folder) / f"sam2_tiny_seed{TINY_SEED}"
    if (path / "config.json").is_file():
        return path
    from transformers import Sam2Model

    _quiet()
    torch.manual_seed(TINY_SEED)
    model = Sam2Model(config(SPECS["tiny"]))
    dec = model.mask_decoder
    with torch.no_grad():
        for m in (dec.upscale_conv1, dec.upscale_conv2):
            m.weight.copy_(m.weight.mean(dim=(2, 3), keepdim=True).expand_as(m.weight))
        for mlp in dec.output_hypernetworks_mlps:
            for p in (mlp.proj_out.weight, mlp.proj_out.bias):
                p.mul_(2.0 ** 18)
        for conv in (dec.conv_s0, dec.conv_s1):
            for p in (conv.weight, conv.bias):
                p.mul_(0.1)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    tmp.replace(path)
    return path


def _quiet() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()  # no per-file progress bars in the node's log


