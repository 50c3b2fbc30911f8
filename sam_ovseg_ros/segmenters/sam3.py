"""SAM 3 text-prompted instances: every vocabulary name is a prompt; each instance comes with its class.

SAM 3 ("SAM 3: Segment Anything with Concepts", Meta, 2025, github.com/facebookresearch/sam3) through
Hugging Face ``transformers`` (``Sam3Model``, ``Sam3Processor``), loaded from a local folder in the
Hugging Face layout with ``local_files_only`` (nothing is downloaded at run time). Per frame the image
features are computed once; each name's text features are computed once per run and cached (like
OVSeg's text cache); all names are decoded in one batch. The post-processing is the library's
(score = sigmoid(logit) x sigmoid(presence), kept above ``score_threshold``, masks sigmoid, resized
bilinearly to the image, above ``mask_threshold``), vectorised over the names. OVSeg is not needed.

``profile: tiny`` writes a reduced SAM 3 of the real classes with seeded random weights, a CLIP BPE
tokenizer built from open_clip's vocabulary file (the same BPE SAM 3 uses), and a 224 px image
processor into a folder, and loads it through the same ``from_pretrained`` path as the real model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sam_ovseg_ros.core.weights import WeightsError

SOURCE = "https://huggingface.co/facebook/sam3 (gated: accept the SAM license, then `hf download facebook/sam3 " \
         "--local-dir <weights_dir>/sam3`)"
TINY_SEED = 5


@dataclass
class Sam3Output:
    masks: torch.Tensor  # (M, H, W) bool, on the model's device
    scores: torch.Tensor  # (M,) float32
    classes: torch.Tensor  # (M,) int64 index into the prompts
    boxes: torch.Tensor  # (M, 4) float32 x0, y0, x1, y1 in pixels (the model's boxes)


def check_folder(folder: Path) -> None:
    """Raise WeightsError naming what a SAM 3 folder lacks and where it comes from."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise WeightsError(f"SAM 3 folder not found: {folder}. Get it from {SOURCE}")
    weights = list(folder.glob("*.safetensors"))
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / f).is_file() for f in ("processor_config.json", "preprocessor_config.json")):
        missing.append("processor_config.json (or preprocessor_config.json)")
    if not weights:
        missing.append("model*.safetensors")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        missing.append("tokenizer.json")
    if missing:
        raise WeightsError(f"SAM 3 folder {folder} lacks {', '.join(missing)}. Get it from {SOURCE}")


class Sam3Segmenter:
    """Text-prompted instance segmentation with per-name cached text features."""

    def __init__(self, folder: Path, device: str = "cpu", amp_dtype: torch.dtype | None = None) -> None:
        from transformers import Sam3Model, Sam3Processor
        from transformers.utils import logging

        logging.disable_progress_bar()  # no per-file progress bars in the node's log
        check_folder(folder)
        try:
            self.model = Sam3Model.from_pretrained(folder, local_files_only=True).to(device).eval()
            self.processor = Sam3Processor.from_pretrained(folder, local_files_only=True)
        except Exception as exc:  # missing files, bad JSON, a truncated or foreign safetensors file
            raise WeightsError(f"cannot load SAM 3 from {folder}: {exc}. Get it from {SOURCE}") from None
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self._text: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def cached(self) -> int:
        return len(self._text)

    @torch.inference_mode()
    def text_features(self, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L, D) prompt features and (N, L) attention masks; only names not seen before are encoded."""
        new = [n for n in dict.fromkeys(names) if n not in self._text]
        if new:
            tok = self.processor.tokenizer(new, padding="max_length", max_length=32, truncation=True,
                                           return_tensors="pt").to(self.device)
            with self._amp():
                feats = self.model.get_text_features(input_ids=tok["input_ids"],
                                                     attention_mask=tok["attention_mask"]).pooler_output
            for i, n in enumerate(new):
                self._text[n] = (feats[i].float(), tok["attention_mask"][i])
        return torch.stack([self._text[n][0] for n in names]), torch.stack([self._text[n][1] for n in names])

    @torch.inference_mode()
    def segment(self, rgb: np.ndarray, names: list[str], score_threshold: float, mask_threshold: float,
                timings: dict | None = None) -> Sam3Output:
        """Instances of every name in one batch; classes index ``names``."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        t = timings if timings is not None else {}
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        pixels = self.processor(images=rgb, return_tensors="pt")["pixel_values"].to(self.device)
        with self._amp():
            vision = self.model.get_vision_features(pixel_values=pixels)
        t["sam3_encoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        text, mask = self.text_features(names)
        n = len(names)
        batch = type(vision)(**{k: _expand(v, n) for k, v in vision.items()})
        with self._amp():
            out = self.model(vision_embeds=batch, text_embeds=BaseModelOutputWithPooling(pooler_output=text.to(
                self.model.dtype)), attention_mask=mask)
        t["sam3_decoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = postprocess(out.pred_logits.float(), out.presence_logits.float(), out.pred_boxes.float(),
                          out.pred_masks.float(), (h, w), score_threshold, mask_threshold)
        t["sam3_postprocess"] = time.perf_counter() - t0
        return res

    def _amp(self):
        from contextlib import nullcontext

        return nullcontext() if self.amp_dtype is None else torch.autocast(self.device.type, dtype=self.amp_dtype)


def _expand(v, n: int):
    """The image's features for n prompts (views, no copies)."""
    if isinstance(v, torch.Tensor):
        return v.expand(n, *v.shape[1:])
    if isinstance(v, (tuple, list)):
        return type(v)(_expand(x, n) for x in v)
    return v


def postprocess(logits: torch.Tensor, presence: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor,
                size: tuple[int, int], score_threshold: float, mask_threshold: float) -> Sam3Output:
    """The library's instance post-processing for N prompts at once: (N, Q) logits, (N, 1) presence,
    (N, Q, 4) normalised xyxy boxes, (N, Q, h, w) mask logits -> kept instances, flattened over prompts."""
    scores = logits.sigmoid() * presence.sigmoid()
    keep = scores > score_threshold
    cls, query = torch.nonzero(keep, as_tuple=True)
    kept = masks[cls, query].sigmoid()
    if len(kept):
        kept = torch.nn.functional.interpolate(kept[None], size=size, mode="bilinear", align_corners=False)[0]
    h, w = size
    scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return Sam3Output(masks=kept > mask_threshold, scores=scores[cls, query], classes=cls,
                      boxes=boxes[cls, query] * scale)


# ------------------------------------------------------------------ the tiny profile
def tiny_folder(folder: Path) -> Path:
    """A reduced SAM 3 (about 3.6 M parameters, 224 px) with seeded random weights, saved in the
    Hugging Face layout (created once)."""
    path = Path(folder) / f"sam3_tiny_seed{TINY_SEED}"
    if (path / "config.json").is_file():
        return path
    from transformers import Sam3Config, Sam3Model, Sam3Processor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    cfg = Sam3Config(
        vision_config=dict(backbone_config=dict(
            model_type="sam3_vit_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, image_size=224, patch_size=14, window_size=8, global_attn_indexes=[1],
            pretrain_image_size=224), fpn_hidden_size=32, backbone_feature_sizes=[[64, 64], [32, 32], [16, 16]]),
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         projection_dim=32, vocab_size=49408, max_position_embeddings=32),
        geometry_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_encoder_config=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_decoder_config=dict(hidden_size=32, num_layers=1, num_queries=20, num_attention_heads=2,
                                 intermediate_size=64),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2))
    torch.manual_seed(TINY_SEED)
    model = Sam3Model(cfg)
    with torch.no_grad():  # random weights give near-zero logits: lift them so instances pass the thresholds
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(3.0)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": 224, "width": 224},
                                                     mask_size={"height": 64, "width": 64}),
                  tokenizer=clip_tokenizer()).save_pretrained(tmp)
    tmp.replace(path)
    return path


def clip_tokenizer():
    """CLIP's BPE tokenizer (SAM 3's) from the vocabulary file open_clip ships: no download."""
    import gzip

    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = [tuple(m.split()) for m in gzip.open(bpe).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={v: i for i, v in enumerate(vocab)}, merges=merges)
