#!/usr/bin/env python3
"""Per-stage time of the whole pipeline (models included) per 640x480 ScanNet frame; medians.

    python bench/bench_pipeline.py                          # tiny profiles, CPU: sam + OVSeg (vote, mask_clip), sam2, sam3
    python bench/bench_pipeline.py --sam-grid vit_b         # real-size random-weight SAM generator: original vs fast
    python bench/bench_pipeline.py --sam-grid hiera_small   # the same for SAM 2.1 (hiera_tiny/small/base_plus/large)
    python bench/bench_pipeline.py --vocab                  # a run-time vocabulary change (text tower)
    python bench/bench_pipeline.py --full --device cuda     # GPU: SAM ViT-H + OVSeg Swin-B/ViT-L/14,
                                                            #      real sizes, random weights, original and fast presets
    python bench/bench_pipeline.py --device cuda            # GPU readiness: the whole pipeline per stage at real
                                                            #      sizes in fp32 and bf16, and whether torch.compile
                                                            #      (inductor) and CUDA graphs pay; refuses without CUDA

Random weights change what survives the mask filters, not the compute of encoder, decoder or
CLIP per crop; real-size runs therefore time the real architectures. ``--full`` needs no
checkpoints: random state_dicts are written once to a temporary folder and loaded by the real loaders.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sam_ovseg_ros.tools.samplebag import load_frames  # noqa: E402


def median_ms(values) -> float:
    return statistics.median(values) * 1000


def stage_medians(cfg, data: list, frames: int, warm: int = 2) -> dict:
    """Build the configured models and run ``frames`` frames (after ``warm`` untimed ones) through the
    pipeline; per-stage and total medians in ms (CUDA synchronised around each frame)."""
    import torch

    from sam_ovseg_ros import model_registry as models
    from sam_ovseg_ros.core import frame_pipeline as pipeline

    p = pipeline.Pipeline(models.build(cfg, log=lambda s_: None))
    cuda = cfg.device == "cuda"
    times: dict[str, list[float]] = {}
    for i in range(frames + warm):
        if cuda:
            torch.cuda.synchronize()
        r = p.process(data[i % len(data)], cfg)
        if cuda:
            torch.cuda.synchronize()
        if i >= warm:
            for s_, v in r.timings.items():
                times.setdefault(s_, []).append(v)
            times.setdefault("total", []).append(sum(r.timings.values()))
    res = {s_: median_ms(v) for s_, v in times.items()}
    if cuda:
        res["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        del p
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return res


def bench_tiny(frames: int, device: str) -> dict:
    from sam_ovseg_ros.core.cloud import Intrinsics
    from sam_ovseg_ros.core.config import NodeConfig
    from sam_ovseg_ros.core.frame_types import Frame

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("vote", "mask_clip", "sam2", "sam3"):
            cfg = NodeConfig(profile="tiny", device=device, weights_dir=tmp)
            if mode == "sam3":  # SAM 3 text prompts, the 20 default names, no OVSeg
                cfg.segmenter = "sam3"
            elif mode == "sam2":  # SAM 2.1 automatic masks, OVSeg vote
                cfg.segmenter = "sam2"
            else:
                cfg.fusion.mode = mode
            data = [Frame(rgb, d, Intrinsics.from_k(k, 640, 480)) for _, rgb, d, k in load_frames()]
            out[f"tiny_{mode}"] = stage_medians(cfg, data, frames)
    return out


def write_random_sam(folder: Path, model_type: str) -> Path:
    import torch

    from sam_ovseg_ros.segmenters import sam

    path = folder / f"random_sam_{model_type}.pth"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(sam.build(sam.SPECS[model_type]).state_dict(), path)
    return path


def write_random_sam2(folder: Path, model_type: str) -> Path:
    """A real-size SAM 2.1 with random weights in the Hugging Face layout."""
    import torch
    from transformers import Sam2Model

    from sam_ovseg_ros.segmenters import sam2

    path = folder / f"random_sam2_{model_type}"
    if not path.exists():
        torch.manual_seed(0)
        Sam2Model(sam2.config(sam2.SPECS[model_type])).save_pretrained(path)
    return path


def bench_sam_grid(model_type: str, device: str, amp, reps: int, presets=("original", "fast")) -> dict:
    """Real-size SAM (vit_*) or SAM 2.1 (hiera_*) generator on the rendered depth of a real frame: each
    preset's encoder/decoder/post."""
    import torch

    from sam_ovseg_ros.core import depth
    from sam_ovseg_ros.segmenters import generator, sam, sam2

    _, rgb, d, _ = load_frames()[0]
    img = depth.render(d, depth.to_metres(d, 0.001), "original", "inferno", 0.001, 0.3, 5.0)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        if model_type in sam2.FILES:
            model = sam2.load(write_random_sam2(Path(tmp), model_type), model_type, device)
        else:
            model = sam.load(model_type, write_random_sam(Path(tmp), model_type), device)
        gen = generator.MaskGenerator(model, amp)
        for preset in presets:
            # random weights predict meaningless IoU/stability: filters off, so the decoder and the
            # post-processing see every candidate (worst case for both presets)
            p = replace(generator.PRESETS[preset], pred_iou_thresh=0.0, stability_score_thresh=0.0)
            runs = []
            for _ in range(reps + 1):
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                r = gen.generate(img, p)
                if device == "cuda":
                    torch.cuda.synchronize()
                runs.append((time.perf_counter() - t0, r.timings, len(r.masks)))
            runs = runs[1:]
            res[f"{model_type}_{preset}"] = {
                "total_ms": median_ms([t for t, _, _ in runs]),
                **{k: median_ms([tm[k] for _, tm, _ in runs]) for k in runs[0][1]},
                "points": p.points_per_side ** 2, "masks": runs[0][2]}
    return res


def bench_vocab(device: str, reps: int) -> dict:
    """Cost of a run-time vocabulary change: only names not seen before go through the text tower."""
    import torch

    from sam_ovseg_ros.ovseg.clip import TextFeatures, build_clip
    from sam_ovseg_ros.ovseg.config import OVSegConfig

    res = {}
    for size in ("tiny", "full"):
        clip = build_clip(getattr(OVSegConfig, size)().clip).to(device).eval()
        for new in (1, 20):
            ts = []
            for r in range(reps + 1):
                text = TextFeatures(clip)
                with torch.inference_mode():
                    text([f"seen {i}" for i in range(20)])
                    t0 = time.perf_counter()
                    text([f"seen {i}" for i in range(20 - new)] + [f"new {r} {i}" for i in range(new)])
                    if device == "cuda":
                        torch.cuda.synchronize()
                ts.append(time.perf_counter() - t0)
            res[f"vocab_{size}_{new}_new_names_ms"] = median_ms(ts[1:])
        del clip
    return res


def bench_full(device: str, amp, reps: int) -> dict:
    """SAM ViT-H + OVSeg Swin-B/ViT-L/14 at real sizes on one 640x480 frame."""
    import torch

    from sam_ovseg_ros.ovseg import OVSegConfig, OVSegModel, build_predictor

    res = bench_sam_grid("vit_h", device, amp, reps)
    _, rgb, _, _ = load_frames()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random_ovseg.pth"
        torch.manual_seed(0)
        torch.save(OVSegModel(OVSegConfig.full()).state_dict(), path)
        for agg in ("original", "ovseg_demo"):
            cfg = OVSegConfig.full()
            cfg.inference.aggregation = agg
            pred = build_predictor(cfg, path, device=device, amp_dtype=amp)
            names = [f"class {i}" for i in range(20)]
            pred.infer(rgb, names)  # text embeddings cached, kernels warm
            ts = []
            for _ in range(reps):
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = pred.infer(rgb, names, keep=True)
                if device == "cuda":
                    torch.cuda.synchronize()
                ts.append(time.perf_counter() - t0)
            res[f"ovseg_{agg}"] = {"total_ms": median_ms(ts), "valid_regions": int(out.extras["valid_flag"].sum())}
            del pred
    return res


def write_random_sam3(folder: Path) -> Path:
    """A real-size SAM 3 with random weights in the Hugging Face layout (processor and tokenizer included)."""
    import torch
    from transformers import Sam3Config, Sam3Model, Sam3Processor
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    from sam_ovseg_ros.segmenters.sam3 import clip_tokenizer

    path = folder / "random_sam3"
    torch.manual_seed(0)
    Sam3Model(Sam3Config()).save_pretrained(path)
    Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=clip_tokenizer()).save_pretrained(path)
    return path


def bench_cuda(frames: int, reps: int) -> dict:
    """The node's pipeline per stage with real-size random-weight models in fp32 and bf16: SAM ViT-H + OVSeg,
    SAM 2.1 hiera_small and hiera_large + OVSeg, SAM 3; then SAM's image encoder plain vs torch.compile
    (default and reduce-overhead = CUDA graphs)."""
    import torch

    from sam_ovseg_ros.core.cloud import Intrinsics
    from sam_ovseg_ros.core.config import NodeConfig
    from sam_ovseg_ros.core.frame_types import Frame
    from sam_ovseg_ros.ovseg import OVSegConfig, OVSegModel
    from sam_ovseg_ros.segmenters import sam

    res: dict = {}
    data = [Frame(rgb, d, Intrinsics.from_k(k, 640, 480)) for _, rgb, d, k in load_frames()]
    with tempfile.TemporaryDirectory() as tmp:
        sam_path = write_random_sam(Path(tmp), "vit_h")
        ov_path = Path(tmp) / "random_ovseg.pth"
        torch.manual_seed(0)
        torch.save(OVSegModel(OVSegConfig.full()).state_dict(), ov_path)
        for precision in ("fp32", "bf16"):
            cfg = NodeConfig(device="cuda", precision=precision, weights_dir=tmp)
            cfg.sam.checkpoint, cfg.ovseg.checkpoint = str(sam_path), str(ov_path)
            cfg.sam.pred_iou_thresh = cfg.sam.stability_score_thresh = 0.0  # random weights: keep every mask
            res[f"pipeline_{precision}"] = stage_medians(cfg, data, frames)
        for model_type in ("hiera_small", "hiera_large"):  # SAM 2.1 automatic masks + OVSeg at real sizes
            folder = write_random_sam2(Path(tmp), model_type)
            for precision in ("fp32", "bf16"):
                cfg = NodeConfig(device="cuda", precision=precision, weights_dir=tmp, segmenter="sam2")
                cfg.sam2.checkpoint, cfg.sam2.model_type, cfg.ovseg.checkpoint = str(folder), model_type, str(ov_path)
                cfg.sam.pred_iou_thresh = cfg.sam.stability_score_thresh = 0.0
                res[f"sam2_{model_type}_pipeline_{precision}"] = stage_medians(cfg, data, frames)
        s3 = write_random_sam3(Path(tmp))
        for precision in ("fp32", "bf16"):  # SAM 3 at its real size (848 M parameters), 20 text prompts
            cfg = NodeConfig(device="cuda", precision=precision, weights_dir=tmp, segmenter="sam3")
            cfg.sam3.checkpoint, cfg.sam3.score_threshold = str(s3), 0.0  # random weights: keep every query
            res[f"sam3_pipeline_{precision}"] = stage_medians(cfg, data, frames)
        model = sam.load("vit_h", sam_path, "cuda")
        x = torch.randn(1, 3, 1024, 1024, device="cuda")
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            variants = {"eager": model.image_encoder}
            variants["compile"] = torch.compile(model.image_encoder)
            variants["cuda_graphs"] = torch.compile(model.image_encoder, mode="reduce-overhead")
            for name, fn in variants.items():
                ts = []
                for i in range(reps + 3):  # the first calls compile / record the graph
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                        fn(x)
                    torch.cuda.synchronize()
                    if i >= 3:
                        ts.append(time.perf_counter() - t0)
                res.setdefault(f"sam_encoder_{precision}_ms", {})[name] = median_ms(ts)
            enc = res[f"sam_encoder_{precision}_ms"]
            best = min(enc, key=enc.get)
            res[f"sam_encoder_{precision}_verdict"] = (
                f"{best} pays ({enc['eager'] / enc[best]:.2f}x eager)" if best != "eager" and enc[best] < 0.9 * enc["eager"]
                else "eager is as fast: compile does not pay")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    ap.add_argument("--sam-grid", metavar="MODEL_TYPE",
                    help="time the real-size SAM (vit_b/l/h) or SAM 2.1 (hiera_tiny/small/base_plus/large) generator")
    ap.add_argument("--full", action="store_true", help="real-size SAM ViT-H + OVSeg (a GPU run)")
    ap.add_argument("--vocab", action="store_true", help="time a vocabulary change (tiny and ViT-L/14 text tower)")
    ap.add_argument("--presets", nargs="+", default=["original", "fast"], choices=("original", "fast"),
                    help="SAM presets for --sam-grid (original on a CPU takes many minutes)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    a = ap.parse_args()
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench_pipeline: --device cuda needs a CUDA GPU and a CUDA build of torch; this machine has "
              f"{os.cpu_count()} CPU cores and torch {torch.__version__} sees no CUDA device. Refusing (the CPU "
              "figures come from running without --device).", file=sys.stderr)
        return 2
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    machine = f"{os.cpu_count()} CPU cores" + (f", {torch.cuda.get_device_name()}" if a.device == "cuda" else "")
    if a.full:
        res = bench_full(a.device, amp, a.reps)
    elif a.vocab:
        res = bench_vocab(a.device, a.reps)
    elif a.sam_grid:
        res = bench_sam_grid(a.sam_grid, a.device, amp, a.reps, a.presets)
    elif a.device == "cuda":
        res = bench_cuda(min(a.frames, 10), a.reps)
    else:
        res = bench_tiny(a.frames, a.device)
    res["machine"] = f"{machine}, torch {torch.__version__}, {a.precision}"
    print(json.dumps(res, indent=1))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
