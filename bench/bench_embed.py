#!/usr/bin/env python3
"""Cost of the map's object embeddings and of text queries; medians.

1. CLIP crop embedding per crop (mask-prompted image tower, batches of 16): the tiny profile's and the real
   ViT-L/14's (random weights: the compute is the architecture's).
2. The whole pipeline with the map on posed 7-Scenes frames, tiny profile, vote mode: map.embed_per_frame
   0 (no embeddings) against 16 (the default), per-frame total and the embed stage.
3. ``~/map/query``'s search: 10 000 objects with 768-d embeddings (ViT-L/14), top 10, after the text is
   encoded; with and without the filter to the objects on ~/map/objects.

    python bench/bench_embed.py [--frames 12] [--json bench/results/embed.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def median_ms(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def crop_cost(reps: int) -> dict:
    import torch

    from sam_ovseg_ros.ovseg.clip import build_clip, encode_masked
    from sam_ovseg_ros.ovseg.config import OVSegConfig

    out = {}
    for name, cfg, batch in (("tiny", OVSegConfig.tiny().clip, 16), ("ViT-L/14", OVSegConfig.full().clip, 4)):
        clip = build_clip(cfg).eval()
        s = cfg.image_resolution
        crops = torch.randn(batch, 3, s, s)
        masks = (torch.rand(batch, 1, s, s) > 0.3).float()
        with torch.inference_mode():
            encode_masked(clip, crops, masks)  # warm-up
            ms = median_ms(lambda: encode_masked(clip, crops, masks), reps)
        out[name] = {"batch": batch, "ms_per_crop": round(ms / batch, 2)}
        print(f"crop embedding, {name}: {ms / batch:.2f} ms per crop (batch {batch})", flush=True)
    return out


def pipeline_cost(frames: int) -> dict:
    from sam_ovseg_ros import model_registry
    from sam_ovseg_ros.core.cloud import Intrinsics
    from sam_ovseg_ros.core.config import NodeConfig
    from sam_ovseg_ros.core.frame_pipeline import Outputs, Pipeline
    from sam_ovseg_ros.core.frame_types import Frame
    from sam_ovseg_ros.mapping.mapper import Mapper
    from sam_ovseg_ros.tools.samplebag import load_posed_frames

    cfg0 = NodeConfig(profile="tiny", device="cpu", weights_dir=tempfile.mkdtemp())
    models = model_registry.build(cfg0, log=lambda s: None)
    posed = load_posed_frames()
    out = {}
    for budget in (0, 16, 0, 16):  # interleaved: a slow spell of the machine hits both
        cfg = replace(cfg0, map=replace(cfg0.map, embed_per_frame=budget))
        mapper = Mapper(0.05, 2_000_000, 0.3, 15, 0.3, 5, 2)
        pipe = Pipeline(models, mapper)
        totals, embeds, crops = out.setdefault(budget, ([], [], []))
        for i in range(frames):
            _, rgb, depth, k, pose = posed[i % len(posed)]
            h, w = depth.shape
            before = int(mapper.map.embeddings.views.sum())
            t0 = time.perf_counter()
            res = pipe.process(Frame(rgb, depth, Intrinsics.from_k(k, w, h), pose=pose), cfg,
                               Outputs(points=True, overlay=True))
            totals.append(time.perf_counter() - t0)
            embeds.append(res.timings.get("embed", 0.0))
            crops.append(int(mapper.map.embeddings.views.sum()) - before)
    result = {}
    for budget, (totals, embeds, crops) in out.items():
        result[f"embed_per_frame_{budget}"] = {
            "frame_ms_median": round(1e3 * statistics.median(totals), 1),
            "embed_ms_median": round(1e3 * statistics.median(embeds), 1),
            "crops_per_frame_median": statistics.median(crops)}
        print(f"pipeline, tiny, vote, embed_per_frame {budget}: {result[f'embed_per_frame_{budget}']}", flush=True)
    a, b = result["embed_per_frame_0"]["frame_ms_median"], result["embed_per_frame_16"]["frame_ms_median"]
    result["ratio_with_to_without"] = round(b / a, 3)
    return result


def query_cost(n: int, dim: int, reps: int) -> dict:
    from sam_ovseg_ros.mapping.embeddings import EmbeddingTable

    rng = np.random.default_rng(0)
    t = EmbeddingTable()
    for lo in range(0, n, 1000):  # objects with 1..3 views
        ids = np.arange(lo + 1, lo + 1001)
        for _ in range(1 + lo // 1000 % 3):
            v = rng.normal(size=(1000, dim)).astype(np.float32)
            t.add(ids, v / np.linalg.norm(v, axis=1, keepdims=True), rng.uniform(0.01, 0.3, 1000))
    q = rng.normal(size=dim).astype(np.float32)
    q /= np.linalg.norm(q)
    listed = {int(i): None for i in range(1, n + 1, 2)}  # what ~/map/objects would list
    res = {"objects": len(t), "dim": dim,
           "query_ms_median": round(median_ms(lambda: t.query(q, 10), reps), 3),
           "query_listed_ms_median": round(median_ms(lambda: t.query(q, 10, listed), reps), 3)}
    print(f"query over {len(t)} objects ({dim}-d): {res}", flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "embed.json")
    a = ap.parse_args()
    import torch

    result = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "query": query_cost(10_000, 768, a.reps), "crop": crop_cost(max(3, a.reps // 10)),
              "pipeline": pipeline_cost(a.frames)}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
