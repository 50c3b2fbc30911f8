"""MaskFormer head of OVSeg: FPN pixel decoder and the DETR-style query decoder with its MLPs.

Attribute names follow the checkpoint (``sem_seg_head.pixel_decoder.adapter_1.norm.weight``,
``sem_seg_head.predictor.transformer.decoder.layers.0.self_attn.in_proj_weight``...).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sam_ovseg_ros.ovseg.config import HeadConfig


class ConvNorm(nn.Conv2d):
    """detectron2's Conv2d: conv -> optional GroupNorm(32) -> optional ReLU (keys weight, norm.*)."""

    def __init__(self, cin: int, cout: int, k: int, norm: bool, relu: bool) -> None:
        super().__init__(cin, cout, k, padding=k // 2, bias=not norm)
        self.norm = nn.GroupNorm(32, cout) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class PixelDecoder(nn.Module):
    """FPN top-down: res5 -> 3x3; for res4..res2 a 1x1 lateral + nearest-upsampled coarser level -> 3x3."""

    def __init__(self, in_channels: list[int], conv_dim: int, mask_dim: int) -> None:
        super().__init__()
        n = len(in_channels)
        for i, cin in enumerate(in_channels):
            if i < n - 1:
                self.add_module(f"adapter_{i + 1}", ConvNorm(cin, conv_dim, 1, norm=True, relu=False))
            self.add_module(f"layer_{i + 1}", ConvNorm(cin if i == n - 1 else conv_dim, conv_dim, 3,
                                                       norm=True, relu=True))
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        self.n = n

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats`` finest first (res2..res5); returns the mask features at the finest stride."""
        y = getattr(self, f"layer_{self.n}")(feats[-1])
        for i in range(self.n - 2, -1, -1):
            lat = getattr(self, f"adapter_{i + 1}")(feats[i])
            y = getattr(self, f"layer_{i + 1}")(lat + F.interpolate(y, size=lat.shape[-2:], mode="nearest"))
        return self.mask_features(y)


def sine_position(b: int, h: int, w: int, num_feats: int, device, dtype=torch.float32) -> torch.Tensor:
    """(B, 2*num_feats, H, W) normalised sine embedding, y features first (DETR/MaskFormer)."""
    ones = torch.ones(b, h, w, device=device, dtype=torch.float32)
    y = ones.cumsum(1)
    x = ones.cumsum(2)
    eps, scale = 1e-6, 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_feats)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2).to(dtype)


class DecoderLayer(nn.Module):
    """Post-norm DETR decoder layer (dropout inactive at inference)."""

    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.multihead_attn = nn.MultiheadAttention(d, heads)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, tgt, memory, pos, query_pos):
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, q, tgt, need_weights=False)[0])
        tgt = self.norm2(tgt + self.multihead_attn(tgt + query_pos, memory + pos, memory, need_weights=False)[0])
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class Decoder(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d, heads, ffn) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, tgt, memory, pos, query_pos) -> torch.Tensor:
        """(layers, Q, B, d): every layer's output after the shared final LayerNorm."""
        outs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos)
            outs.append(self.norm(tgt))
        return torch.stack(outs)


class Transformer(nn.Module):
    """0 encoder layers (memory = input features) + the decoder."""

    def __init__(self, d: int, heads: int, ffn: int, layers: int) -> None:
        super().__init__()
        self.decoder = Decoder(d, heads, ffn, layers)


class MLP(nn.Module):
    def __init__(self, din: int, hidden: int, dout: int, layers: int) -> None:
        super().__init__()
        dims = [din] + [hidden] * (layers - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class Predictor(nn.Module):
    """Queries attend to res5; each gets a CLIP-space class embedding and a mask embedding."""

    def __init__(self, cfg: HeadConfig, in_channels: int) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.transformer = Transformer(d, cfg.nheads, cfg.dim_feedforward, cfg.dec_layers)
        self.query_embed = nn.Embedding(cfg.num_queries, d)
        self.input_proj = nn.Conv2d(in_channels, d, 1) if in_channels != d else nn.Identity()
        self.class_embed = MLP(d, cfg.embed_hidden_dim, cfg.embedding_dim, cfg.embed_layers)
        self.mask_embed = MLP(d, d, cfg.mask_dim, 3)
        self.num_feats = d // 2

    def forward(self, res5: torch.Tensor, mask_features: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = res5.shape
        src = self.input_proj(res5)
        pos = sine_position(b, h, w, self.num_feats, res5.device, src.dtype).flatten(2).permute(2, 0, 1)
        memory = src.flatten(2).permute(2, 0, 1)
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)
        hs = self.transformer.decoder(torch.zeros_like(query_pos), memory, pos, query_pos).transpose(1, 2)
        # Masks of every layer, as the original computes them: the same einsum over (layers, ...)
        # reproduces its float rounding exactly; only the last layer's masks are used.
        masks = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(hs), mask_features)
        return {"hs": hs, "class_embed": self.class_embed(hs[-1]), "mask_logits": masks[-1], "aux_mask_logits": masks}


class SemSegHead(nn.Module):
    def __init__(self, cfg: HeadConfig, in_channels: list[int]) -> None:
        super().__init__()
        self.pixel_decoder = PixelDecoder(in_channels, cfg.conv_dim, cfg.mask_dim)
        self.predictor = Predictor(cfg, in_channels[-1])

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = sorted(feats)  # res2..res5
        mask_features = self.pixel_decoder([feats[n] for n in names])
        out = self.predictor(feats[names[-1]], mask_features)
        out["mask_features"] = mask_features
        return out
