"""OVSeg's mask-adapted CLIP on top of open_clip: the mask-prompted image tower and prompt-ensembled text.

open_clip builds the ViT (QuickGELU, OpenAI key layout) from our sizes, offline. The mask prompt
(not in open_clip) is this module's ``encode_masked``: patch tokens outside the region are
replaced by learned ``mask_embedding[0]`` before the CLS token and positions are added, and by
``mask_embedding[d]`` after block d for d < mask_prompt_depth. The CLS token is never replaced.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from sam_ovseg_ros.ovseg.config import VILD_TEMPLATES, ClipConfig


def build_clip(cfg: ClipConfig) -> nn.Module:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    model = CLIP(
        cfg.embed_dim,
        CLIPVisionCfg(layers=cfg.vision_layers, width=cfg.vision_width, head_width=64,
                      patch_size=cfg.vision_patch_size, image_size=cfg.image_resolution),
        CLIPTextCfg(context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.transformer_width,
                    heads=cfg.transformer_heads, layers=cfg.transformer_layers),
        quick_gelu=True,
    )
    model.visual.register_parameter(
        "mask_embedding", nn.Parameter(torch.zeros(cfg.mask_prompt_depth, cfg.grid * cfg.grid, cfg.vision_width)))
    return model


def patch_keep(region_masks: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 1, S, S) masks -> (B, g*g, 1) float: 1 where any pixel of the patch is inside (ceil of the mean)."""
    return torch.ceil(F.avg_pool2d(region_masks.float(), patch, patch)).flatten(1).unsqueeze(-1)


def encode_masked(clip: nn.Module, images: torch.Tensor, region_masks: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) normalised crops + (B, 1, S, S) masks -> (B, E) L2-normalised image features."""
    v = clip.visual
    x = v.conv1(images.to(v.conv1.weight.dtype))
    x = x.flatten(2).transpose(1, 2)  # (B, g*g, width)
    keep = patch_keep(region_masks, v.conv1.kernel_size[0]).to(x.dtype)
    emb = v.mask_embedding.to(x.dtype)
    if emb.shape[1] == 1:
        emb = emb.expand(-1, x.shape[1], -1)
    depth = emb.shape[0]
    x = x * keep + emb[0] * (1 - keep)
    cls = v.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
    x = v.ln_pre(torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype))
    for i, block in enumerate(v.transformer.resblocks):
        x = block(x)
        if i + 1 < depth:
            x = torch.cat([x[:, :1], x[:, 1:] * keep + emb[i + 1] * (1 - keep)], dim=1)
    feats = v.ln_post(x[:, 0]) @ v.proj
    return feats / feats.norm(dim=-1, keepdim=True)


def encode_text(clip: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP text features of (B, context) OpenAI-BPE token ids, computed on the first L positions only.

    L is the last end-of-text position + 1. The causal mask hides later (padding) positions from
    the end-of-text token that CLIP pools, so this equals open_clip's 77-position ``encode_text``
    up to float rounding while doing ~6x less work for short prompts (a vocabulary change).
    """
    eot = tokens.argmax(dim=-1)  # end-of-text has the largest id
    n = int(eot.max()) + 1
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens[:, :n]).to(cast) + clip.positional_embedding[:n].to(cast)
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:n, :n]))
    return x[torch.arange(x.shape[0], device=x.device), eot] @ clip.text_projection


class TextFeatures:
    """Per-name text embeddings (14 ViLD templates, each L2-normalised, averaged, renormalised), cached.

    Changing the vocabulary only encodes names not seen before. The cache keeps the ``max_entries``
    names used last (a vocabulary holds at most 4096; texts of map queries come and go), so no caller
    can grow it without bound; thread-safe (the frame worker and the query service both use it).
    """

    def __init__(self, clip: nn.Module, templates=VILD_TEMPLATES, max_entries: int = 8192) -> None:
        import open_clip

        self.clip = clip
        self.templates = tuple(templates)
        self.tokenize = open_clip.get_tokenizer("ViT-L-14")  # OpenAI BPE, bundled with open_clip
        self.max_entries = max_entries
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def tokens(self, names: list[str]) -> torch.Tensor:
        """(T, N, context) token ids, template-major."""
        texts = [t.format(n) for t in self.templates for n in names]
        return self.tokenize(texts).view(len(self.templates), len(names), -1)

    def __call__(self, names: list[str]) -> torch.Tensor:
        with self._lock:
            have = {n: self._cache[n] for n in dict.fromkeys(names) if n in self._cache}
        new = [n for n in dict.fromkeys(names) if n not in have]
        if new:
            device = self.clip.token_embedding.weight.device
            tok = self.tokens(new).to(device)
            t, n, c = tok.shape
            with torch.autocast(device.type, enabled=False):
                feats = encode_text(self.clip, tok.view(t * n, c)).float().view(t, n, -1)
            feats = feats / feats.norm(dim=-1, keepdim=True)
            feats = feats.mean(dim=0)
            feats = feats / feats.norm(dim=-1, keepdim=True)
            have.update(zip(new, feats))
        with self._lock:
            for n in have:  # most recently used last
                self._cache[n] = have[n]
                self._cache.move_to_end(n)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return torch.stack([have[n] for n in names])

    def cached(self) -> int:
        return len(self._cache)
