#!/usr/bin/env python3
"""How test/data/sam2_tiny/ was made: the original SAM 2 code on a tiny seeded model of its real classes.

Not run by the tests (the original code is not a dependency). It needs SAM 2 1.1.0's Python sources (the
PyPI sdist `sam2-1.1.0.tar.gz`, sha256 7e0ea252d43c10d853e3acfce0b5770ac683c30481bd6de311300e9d44f45b74,
the files of github.com/facebookresearch/sam2 at that release) and hydra-core + iopath on PYTHONPATH, next
to this project's environment (torch 2.14.1, CPU):

    PYTHONPATH=<sam2-1.1.0>:<hydra-core, iopath> .venv/bin/python test/data/sam2_tiny/make_golden.py

It writes
- ``manifest.json``: every key and shape of the four SAM 2.1 models (hiera t/s/b+/l) as SAM 2 builds them
  from its own configs/sam2.1/*.yaml (what their released .pt checkpoints hold);
- ``sam2.1_tiny_seed2.pt``: a tiny SAM2Base (Hiera 16 channels, stages 1-1-2-1, 256 px, SAM heads at 32
  channels; SAM 2 fixes their depth 2, MLP 2048, 8 heads) in the released checkpoint layout ``{"model": sd}``,
  its mask-decoder ConvTranspose kernels averaged over their taps, its hypernetwork outputs scaled by 2^18 and
  its high-resolution feature projections by 0.1, as the project's tiny profile does (coherent regions,
  logits of order one);
- ``golden.npz``: SAM2AutomaticMaskGenerator's masks (its image predictor's feature sizes, written for 1024 px
  inputs, set to the tiny model's 64/32/16) (bit-packed), boxes, predicted IoU and stability on
  the rendered depth and the colour image of two ScanNet frames, without and with its small-region clean-up;
  and its image predictor's low-resolution logits and IoU for four single point prompts on one colour frame.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))

from hydra import compose  # noqa: E402  (SAM 2's package initialises hydra on import)
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import sam2  # noqa: E402,F401
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator  # noqa: E402
from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from scannet import segmenter_inputs  # noqa: E402

SEED = 2  # of 10 tried: 7-12 masks per image, 5-6 of them partial regions
SIZES = {"hiera_tiny": "t", "hiera_small": "s", "hiera_base_plus": "b+", "hiera_large": "l"}
# (points per side, points per batch, pred IoU, stability, box NMS, min region area)
POINTS = [(12.5, 7.0), (320.0, 240.0), (600.0, 470.0), (40.0, 455.0)]  # pixels of the 640x480 colour frame
CASES = {"no_cleanup": (8, 20, 0.0, 0.0, 0.7, 0), "filters_cleanup": (12, 64, 0.5, 0.2, 0.8, 100)}


def config(size: str):
    cfg = compose(config_name=f"configs/sam2.1/sam2.1_hiera_{size}.yaml")
    OmegaConf.resolve(cfg)
    return cfg


def tiny_config():
    """SAM 2.1 hiera_t's config with every width, depth and size made tiny (the memory modules too)."""
    cfg = config("t")
    OmegaConf.set_struct(cfg, False)  # window_spec and in_dim are not in the yaml: constructor defaults there
    m = cfg.model
    m.image_size = 256
    t = m.image_encoder.trunk
    t.embed_dim, t.num_heads, t.stages, t.global_att_blocks = 16, 1, [1, 1, 2, 1], [3]
    t.window_spec, t.window_pos_embed_bkg_spatial_size = [8, 4, 4, 2], [7, 7]
    n = m.image_encoder.neck
    n.d_model, n.backbone_channel_list, n.position_encoding.num_pos_feats = 32, [128, 64, 32, 16], 32
    a = m.memory_attention
    a.d_model = a.layer.d_model = 32
    a.layer.dim_feedforward, a.num_layers = 64, 1
    for att in (a.layer.self_attention, a.layer.cross_attention):
        att.embedding_dim, att.feat_sizes = 32, [16, 16]
    a.layer.cross_attention.kv_in_dim = 16
    e = m.memory_encoder
    e.out_dim, e.in_dim, e.position_encoding.num_pos_feats = 16, 32, 16
    e.mask_downsampler.embed_dim = 32
    e.fuser.layer.dim, e.fuser.num_layers = 32, 1
    m.num_maskmem = 2
    return cfg


def main() -> None:
    manifest = {}
    for name, size in SIZES.items():
        sd = instantiate(config(size).model, _recursive_=True).state_dict()
        manifest[name] = {k: list(v.shape) for k, v in sd.items()}
    (HERE / "manifest.json").write_text(json.dumps(manifest))

    torch.manual_seed(SEED)
    model = instantiate(tiny_config().model, _recursive_=True).eval()
    with torch.no_grad():
        dec = model.sam_mask_decoder
        for i in (0, 3):  # output_upscaling: ConvTranspose, LayerNorm, GELU, ConvTranspose, GELU
            w = dec.output_upscaling[i].weight
            w.copy_(w.mean(dim=(2, 3), keepdim=True).expand_as(w))
        for mlp in dec.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(2.0 ** 18)
            mlp.layers[-1].bias.mul_(2.0 ** 18)
        for conv in (dec.conv_s0, dec.conv_s1):  # random high-resolution features drown the masks' regions
            conv.weight.mul_(0.1)
            conv.bias.mul_(0.1)
    torch.save({"model": model.state_dict()}, HERE / f"sam2.1_tiny_seed{SEED}.pt")

    out = {}
    for case, (side, batch, iou, stab, nms, area) in CASES.items():
        gen = SAM2AutomaticMaskGenerator(model, points_per_side=side, points_per_batch=batch, pred_iou_thresh=iou,
                                         stability_score_thresh=stab, box_nms_thresh=nms, min_mask_region_area=area)
        gen.predictor._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]  # its predictor assumes 1024 px inputs
        for img_name, img in segmenter_inputs().items():
            with torch.inference_mode():
                res = [r for r in gen.generate(img) if r["area"] > 0]
            key = f"{case}/{img_name}"
            out[key + "/masks"] = np.packbits(np.stack([r["segmentation"] for r in res]), axis=-1)
            out[key + "/boxes"] = np.array([r["bbox"] for r in res], np.int64)  # x, y, w, h
            out[key + "/iou"] = np.array([r["predicted_iou"] for r in res], np.float32)
            out[key + "/stability"] = np.array([r["stability_score"] for r in res], np.float32)
            print(key, len(res), "masks")
    pred = SAM2ImagePredictor(model)
    pred._bb_feat_sizes = [(64, 64), (32, 32), (16, 16)]
    pred.set_image(segmenter_inputs()["1660_rgb"])
    for i, xy in enumerate(POINTS):  # one prompt at a time, as its own predict() takes them
        _, iou, low = pred.predict(point_coords=np.array([xy]), point_labels=np.array([1]), multimask_output=True,
                                   return_logits=True)
        out[f"points/{i}/low_res_logits"], out[f"points/{i}/iou"] = low.astype(np.float32), iou.astype(np.float32)
    out["points"] = np.array(POINTS, np.float64)
    out["cases"] = np.array(json.dumps(CASES))
    np.savez_compressed(HERE / "golden.npz", **out)


if __name__ == "__main__":
    main()
