"""``sam_ovseg_ovseg``: run OVSeg alone on one image and write the score map and labels to .npz."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sam_ovseg_ovseg", description=__doc__)
    p.add_argument("--config", help="model config: test/data/ovseg_tiny/tiny_config.json or our JSON/YAML "
                                    "(sections swin, head, clip, inference); default: the full Swin-B/ViT-L model")
    p.add_argument("--weights", required=True, help="checkpoint (.pth: detectron2 {'model': ...} or a state_dict)")
    p.add_argument("--image", required=True, help="input image (any format Pillow reads)")
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "wall,floor,office chair"')
    p.add_argument("--aggregation", choices=("original", "ovseg_demo"), default=None,
                   help="original: soft sum over regions (default); ovseg_demo: one region per class, binary masks")
    p.add_argument("--mask-threshold", type=float, default=None, help="default: 0.1 (original) / 0.35 (ovseg_demo)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", required=True, help="output .npz with sem_seg [K,H,W] float32, labels [H,W] int")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from PIL import Image

    from sam_ovseg_ros.core.weights import WeightsError
    from sam_ovseg_ros.ovseg import build_predictor
    from sam_ovseg_ros.ovseg.config import OVSegConfig

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = OVSegConfig.from_file(args.config) if args.config else OVSegConfig.full()
    if args.aggregation and args.aggregation != cfg.inference.aggregation:
        # the config's threshold belongs to its own aggregation; the other one uses its default
        cfg.inference.aggregation, cfg.inference.mask_threshold = args.aggregation, None
    names = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not names:
        print("error: --classes is empty", file=sys.stderr)
        return 2
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    try:
        predictor = build_predictor(cfg, args.weights, device=args.device, amp_dtype=amp)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    t0 = time.perf_counter()
    out = predictor.infer(rgb, names, aggregation=cfg.inference.aggregation, mask_threshold=args.mask_threshold)
    dt = time.perf_counter() - t0
    np.savez_compressed(args.out, sem_seg=out.sem_seg.float().cpu().numpy(), labels=out.labels.cpu().numpy(),
                        blank=out.blank.cpu().numpy(), class_names=np.array(out.class_names))
    print(f"{args.out}: sem_seg {tuple(out.sem_seg.shape)}, {len(out.class_names)} classes, "
          f"aggregation {cfg.inference.aggregation}, {dt * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
